"""pytest fixtures for plugin authors (registered as a `pytest11` plugin).

    def test_my_node(invokeai_register_nodes, invokeai_run_graph):
        invokeai_register_nodes(MyNode)
        run = invokeai_run_graph({"nodes": {"n": {"id": "n", "type": "my_node"}}, "edges": []})
        assert run.status == "completed"
        assert run["n"].value == 42

Fixtures (all isolated per test, a temporary root folder, in-memory stores unless asked otherwise):

* `invokeai_root`: the temporary root folder.
* `invokeai_storage`: `"memory"` (the default) or `"sqlite"`: which sessions, image records and queue
  stores the fixtures use. Ask for the SQLite database of the root folder (the production default)
  with `@pytest.mark.parametrize("invokeai_storage", ["sqlite"])`, or both with `["memory", "sqlite"]`.
* `invokeai_config`: the configuration for that root (those stores, local images).
* `invokeai_host`: a plugin host with the installed plugins, for this test.
* `invokeai_register_plugin(obj, name=None)`: register a plugin object (a module or any object
  with hookimpls) for this test only.
* `invokeai_register_nodes(*classes)`: register node classes for this test only.
* `invokeai_invoker`: a started `Invoker`.
* `invokeai_run_graph(graph, timeout=60)`: run a graph (dict, JSON text or `Graph`) and return a
  `GraphRun` with `.status`, `.results`, `.errors`, `.session` and `run[node_id]`.

**Nothing is skipped in CI.** Under `CI=true` (set by CI services) or `INVOKEAI_REQUIRE_ALL_TESTS=1`,
a skipped test or module fails instead, with its reason, which says what to install: a suite that
needs a server (Redis, Chromium, PostgreSQL, ...) skips with `pytest.skip("redis-server is not
installed (apt-get install -y redis-server)")` and cannot pass CI without it. A skip that is a
choice, not a missing part (an opt-in full-size test), carries `@pytest.mark.invokeai_optional`
or calls `skip_by_choice(reason)`.

Service contract tests for other backends live in `invokeai_core.testing.contracts` (imported only
by the tests that use them).

Heavy imports happen inside the fixtures: loading this module costs nothing for unrelated tests
(it imports neither pydantic nor the engine).
"""

from __future__ import annotations

import itertools
import json
import os
import types
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invoker import Invoker
    from invokeai_core.plugins.host import PluginHost, PluginInfo
    from invokeai_core.session import Session

_counter = itertools.count(1)

REQUIRE_ALL_ENV = "INVOKEAI_REQUIRE_ALL_TESTS"


def require_all_tests() -> bool:
    """True under `CI=true` or `INVOKEAI_REQUIRE_ALL_TESTS=1`: a skipped test then fails."""
    ci = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
    return ci or os.environ.get(REQUIRE_ALL_ENV, "").strip() == "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "invokeai_optional: a skip by choice (opt-in tests), allowed under CI=true too")


class _SkipByChoice(pytest.skip.Exception):  # type: ignore[name-defined]
    pass


def skip_by_choice(reason: str) -> NoReturn:
    """`pytest.skip` for a test that does not apply here by design (a contract test of a capability
    the store under test does not offer), which stays a skip under CI=true."""
    raise _SkipByChoice(msg=reason)


def _fail_a_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    report.outcome = "failed"
    report.longrepr = (
        f"{reason.removeprefix('Skipped: ')}\n"
        f"(a skip fails under CI=true or {REQUIRE_ALL_ENV}=1: install what is missing so every test runs)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    if (
        report.skipped
        and not hasattr(report, "wasxfail")
        and item.get_closest_marker("invokeai_optional") is None
        and not (call.excinfo is not None and isinstance(call.excinfo.value, _SkipByChoice))
        and require_all_tests()
    ):
        _fail_a_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report: pytest.CollectReport = yield
    if report.skipped and require_all_tests():
        _fail_a_skip(report)
    return report


def make_plugin(
    *classes: type, name: str | None = None, services: list[tuple[str, str, str]] | None = None
) -> types.ModuleType:
    """A plugin module that registers `classes` (and optional `(kind, name, path)` services)."""
    from invokeai_core.hookspecs import hookimpl

    module = types.ModuleType(name or f"test_plugin_{next(_counter)}")

    @hookimpl
    def register_invocations(register: Callable[[Any], None]) -> None:
        for cls in classes:
            register(cls)

    module.register_invocations = register_invocations  # type: ignore[attr-defined]
    if services:

        @hookimpl
        def register_services(register: Callable[..., None]) -> None:
            for kind, impl_name, path in services:
                register(kind, impl_name, path)

        module.register_services = register_services  # type: ignore[attr-defined]
    return module


@dataclass
class GraphRun:
    """The outcome of `invokeai_run_graph`."""

    session: Session

    @property
    def status(self) -> str:
        return self.session.status

    @property
    def results(self) -> dict[str, Any]:
        return self.session.results_by_source()

    @property
    def errors(self) -> dict[str, Any]:
        return self.session.errors_by_source()

    def __getitem__(self, node_id: str) -> Any:
        return self.results[node_id]

    def json(self) -> dict[str, Any]:
        return self.session.result_json()


@pytest.fixture
def invokeai_root(tmp_path: Path) -> Path:
    root = tmp_path / "invokeai-root"
    root.mkdir()
    return root


#: The service kinds `invokeai_storage` switches between "memory" and "sqlite".
STORAGE_KINDS = ("sessions", "image_records", "queue")


@pytest.fixture
def invokeai_storage() -> str:
    """`"memory"` or `"sqlite"`; override with `@pytest.mark.parametrize("invokeai_storage", [...])`."""
    return "memory"


@pytest.fixture
def invokeai_config(invokeai_root: Path, invokeai_storage: str) -> InvokeAIConfig:
    from invokeai_core.config import load_config

    if invokeai_storage not in ("memory", "sqlite"):
        raise ValueError(f"invokeai_storage must be 'memory' or 'sqlite', not {invokeai_storage!r}")
    config = load_config(root=invokeai_root, environ={})
    selected = config.services.selected()
    selected.update(dict.fromkeys(STORAGE_KINDS, invokeai_storage))
    config.services = type(config.services).model_validate(selected)
    return config


@pytest.fixture
def invokeai_host(invokeai_config: InvokeAIConfig) -> PluginHost:
    from invokeai_core.plugins.host import PluginHost

    return PluginHost(invokeai_config).load()


@pytest.fixture
def invokeai_register_plugin(invokeai_host: PluginHost) -> Iterator[Callable[..., PluginInfo]]:
    added: list[str] = []

    def register(plugin: Any, name: str | None = None) -> PluginInfo:
        info = invokeai_host.register_plugin(plugin, name)
        added.append(info.name)
        return info

    yield register
    for name in reversed(added):
        invokeai_host.unregister_plugin(name)


@pytest.fixture
def invokeai_register_nodes(invokeai_register_plugin: Callable[..., PluginInfo]) -> Callable[..., PluginInfo]:
    def register(*classes: type, name: str | None = None) -> PluginInfo:
        info = invokeai_register_plugin(make_plugin(*classes, name=name), name)
        if info.status != "loaded":
            raise RuntimeError(f"registering {classes} failed: {info.error}")
        return info

    return register


@pytest.fixture
def invokeai_invoker(invokeai_host: PluginHost, invokeai_config: InvokeAIConfig) -> Iterator[Invoker]:
    from invokeai_core.invoker import Invoker

    invoker = Invoker.from_config(invokeai_config, invokeai_host).start()
    try:
        yield invoker
    finally:
        invoker.stop()


@pytest.fixture
def invokeai_run_graph(invokeai_invoker: Invoker) -> Callable[..., GraphRun]:
    from invokeai_core.graph import Graph

    def run(graph: Graph | dict[str, Any] | str, timeout: float = 60.0) -> GraphRun:
        if isinstance(graph, Graph):
            parsed = graph
            parsed.validate(require_inputs=True)
        else:
            data = json.loads(graph) if isinstance(graph, str) else graph
            parsed = Graph.from_dict(data, invokeai_invoker.registry, require_inputs=True)
        return GraphRun(invokeai_invoker.run_graph(parsed, timeout=timeout))

    return run

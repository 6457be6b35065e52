"""pytest fixtures for plugin authors (registered as a `pytest11` plugin).

    def test_my_node(invokeai_register_nodes, invokeai_run_graph):
        invokeai_register_nodes(MyNode)
        run = invokeai_run_graph({"nodes": {"n": {"id": "n", "type": "my_node"}}, "edges": []})
        assert run.status == "completed"
        assert run["n"].value == 42

Fixtures (all isolated per test, in-memory services, a temporary root folder):

* `invokeai_root`: the temporary root folder.
* `invokeai_config`: the configuration for that root (memory stores, local images).
* `invokeai_host`: a plugin host with the installed plugins, made the default host for the test.
* `invokeai_register_plugin(obj, name=None)`: register a plugin object (a module or any object
  with hookimpls) for this test only.
* `invokeai_register_nodes(*classes)`: register node classes for this test only.
* `invokeai_invoker`: a started `Invoker`.
* `invokeai_run_graph(graph, timeout=60)`: run a graph (dict, JSON text or `Graph`) and return a
  `GraphRun` with `.status`, `.results`, `.errors`, `.session` and `run[node_id]`.

Heavy imports happen inside the fixtures: loading this module costs nothing for unrelated tests.
"""

from __future__ import annotations

import itertools
import json
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invoker import Invoker
    from invokeai_core.plugins.host import PluginHost, PluginInfo
    from invokeai_core.session import Session

_counter = itertools.count(1)


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


@pytest.fixture
def invokeai_config(invokeai_root: Path) -> InvokeAIConfig:
    from invokeai_core.config import load_config

    return load_config(root=invokeai_root, environ={})


@pytest.fixture
def invokeai_host(invokeai_config: InvokeAIConfig) -> Iterator[PluginHost]:
    from invokeai_core.plugins.host import PluginHost, set_host

    host = PluginHost(invokeai_config).load()
    previous = set_host(host)
    try:
        yield host
    finally:
        set_host(previous)


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

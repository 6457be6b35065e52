"""How the kernel is wired: one composition root, services handed a runtime, hooks called plugin by
plugin in pluggy's order with every failure rolled back, and one public surface for plugins."""

from __future__ import annotations

import re
import types
import warnings
from pathlib import Path
from typing import Any

import click
import pytest
from conftest import REPO, run_cli, write_fake_plugin

import invokeai_core
from invokeai_core import (
    EventServiceBase,
    Graph,
    Invoker,
    NodeRegistry,
    PluginHost,
    ServiceRuntime,
    ServiceUnavailableError,
    SessionQueueBase,
    hookimpl,
    hookspec,
    load_config,
)
from invokeai_core.services.memory import MemorySessionQueue


def _host(tmp_path: Path) -> PluginHost:
    config = load_config(root=tmp_path, environ={})
    return PluginHost(config, allowlist=set(), strict=False).load()


def _plugin(name: str, **hooks: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, fn in hooks.items():
        fn.__name__ = hook_name
        setattr(module, hook_name, fn)
    return module


# -- the composition root and the runtime ---------------------------------------------------------
class RuntimeQueue(MemorySessionQueue):
    """A queue that records the runtime it was built with (the kernel's memory queue, subclassed)."""

    seen: ServiceRuntime | None = None

    def __init__(self, config: Any = None, *, runtime: ServiceRuntime | None = None) -> None:
        super().__init__(config, runtime=runtime)
        RuntimeQueue.seen = runtime


class LegacyQueue(MemorySessionQueue):
    """A first-release store: built as `Class(config)`, handed the Invoker in `start(invoker)`."""

    started_with: Any = None

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)

    def start(self, invoker: Any) -> None:
        super().start(invoker)
        LegacyQueue.started_with = invoker


def _queue_plugin(name: str, path: str) -> types.ModuleType:
    def register_services(register: Any) -> None:
        register("queue", name, path)

    return _plugin(f"p_{name}", register_services=hookimpl(register_services))


def test_from_config_builds_the_host_and_hands_each_store_the_runtime(tmp_path: Path) -> None:
    host = _host(tmp_path)
    host.register_plugin(_queue_plugin("q_runtime", f"{__name__}:RuntimeQueue"), "p_q_runtime")
    config = load_config(root=tmp_path, environ={}, overrides={"services.queue": "q_runtime"})
    invoker = Invoker.from_config(config, host)
    runtime = RuntimeQueue.seen
    assert runtime is not None and invoker.services.queue.registry is host.registry
    assert runtime.registry is host.registry is invoker.registry
    assert runtime.events is invoker.services.events and runtime.config is config
    # usable at once: no start(invoker) needed to parse a batch or emit
    got: list[Any] = []
    invoker.services.events.subscribe(got.append, names=["batch_enqueued"])
    invoker.queue.enqueue_batch("default", {"graph": {"nodes": {"c": {"id": "c", "type": "collect"}}, "edges": []}})
    assert [e.event_name for e in got] == ["batch_enqueued"]


def test_from_config_without_a_host_loads_one_for_the_configuration(tmp_path: Path) -> None:
    config = load_config(root=tmp_path, environ={}, overrides={"services.sessions": "memory"})
    invoker = Invoker.from_config(config)
    assert invoker.host.config is config and "collect" in invoker.registry


def test_a_legacy_start_invoker_store_still_works_with_a_deprecation_warning(tmp_path: Path) -> None:
    host = _host(tmp_path)
    host.register_plugin(_queue_plugin("q_legacy", f"{__name__}:LegacyQueue"), "p_q_legacy")
    config = load_config(root=tmp_path, environ={}, overrides={"services.queue": "q_legacy"})
    invoker = Invoker.from_config(config, host)
    assert invoker.services.queue.events is None  # built as Class(config): nothing handed to it
    with pytest.warns(DeprecationWarning, match=r"LegacyQueue\.start\(invoker\) is deprecated"):
        invoker.start()
    try:
        assert LegacyQueue.started_with is invoker
        assert invoker.services.queue.events is invoker.services.events  # taken from the Invoker
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            invoker.stop()


def test_parsing_needs_the_registry(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="NodeRegistry"):
        Graph(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Graph.from_dict({"nodes": {}, "edges": []})  # type: ignore[call-arg]
    graph = Graph.from_dict({"nodes": {"c": {"id": "c", "type": "collect"}}, "edges": []}, _host(tmp_path).registry)
    assert list(graph.nodes) == ["c"]


def test_the_kernel_has_no_process_wide_host() -> None:
    from invokeai_core.plugins import host

    assert not hasattr(host, "get_host") and not hasattr(host, "set_host")
    kernel = REPO / "invokeai_core"
    users = [p for p in kernel.rglob("*.py") if "get_host" in p.read_text() and "cli" not in p.parts]
    assert users == []


def test_a_service_whose_init_raises_is_one_line_and_exit_2(tmp_path: Path, cli_root: Path) -> None:
    src = """
from invokeai_core import hookimpl
from invokeai_core.services.memory import MemorySessionStorage

class Exploding(MemorySessionStorage):
    def __init__(self, config=None, **kwargs):
        raise RuntimeError("cannot open the thing")

@hookimpl
def register_services(register):
    register("sessions", "exploding", "fake_exploding:Exploding")
"""
    site = tmp_path / "site"
    write_fake_plugin(site, "fake-exploding", "exploding", "fake_exploding", src)
    env = {"PYTHONPATH": str(site), "INVOKEAI_SERVICES__SESSIONS": "exploding"}
    res = run_cli("run", "collect", root=cli_root, env=env)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "sessions implementation 'exploding' from plugin 'exploding' failed to start" in lines[0]
    assert "RuntimeError: cannot open the thing" in lines[0]


def test_a_store_error_of_the_kernel_passes_through_unchanged(tmp_path: Path) -> None:
    class Unreachable(MemorySessionQueue):
        def __init__(self, config: Any = None) -> None:
            raise ServiceUnavailableError("cannot reach the queue server at 127.0.0.1:1")

    host = _host(tmp_path)
    globals()["Unreachable"] = Unreachable
    try:
        host.register_plugin(_queue_plugin("q_down", f"{__name__}:Unreachable"), "p_q_down")
        config = load_config(root=tmp_path, environ={}, overrides={"services.queue": "q_down"})
        with pytest.raises(ServiceUnavailableError, match=r"^cannot reach the queue server at 127\.0\.0\.1:1$"):
            Invoker.from_config(config, host)
    finally:
        del globals()["Unreachable"]


# -- hooks: pluggy's order, contained failures ------------------------------------------------------
class OrderSpecs:
    @hookspec
    def record_order(self, calls: list[str]) -> None:
        """Append the plugin's name."""


def _ordered_plugins() -> list[tuple[str, types.ModuleType]]:
    def make(name: str, **options: Any) -> types.ModuleType:
        def record_order(calls: list[str]) -> None:
            calls.append(name)

        return _plugin(name, record_order=hookimpl(**options)(record_order))

    return [
        ("p_last", make("p_last", trylast=True)),
        ("p_a", make("p_a")),
        ("p_first", make("p_first", tryfirst=True)),
        ("p_b", make("p_b")),
    ]


def test_hooks_are_called_plugin_by_plugin_in_pluggys_order(tmp_path: Path) -> None:
    host = _host(tmp_path)

    def register_hookspecs(add: Any) -> None:
        add(OrderSpecs)

    host.register_plugin(_plugin("p_specs", register_hookspecs=hookimpl(register_hookspecs)), "p_specs")
    for name, plugin in _ordered_plugins():
        host.register_plugin(plugin, name)
    ours: list[str] = []
    assert host.call_each("record_order", {"calls": ours}) == {}
    pluggys: list[str] = []
    host.pm.hook.record_order(calls=pluggys)
    assert ours == pluggys == ["p_first", "p_b", "p_a", "p_last"]


def test_call_each_contains_a_failure_and_lets_the_caller_undo(tmp_path: Path) -> None:
    host = _host(tmp_path)

    def register_hookspecs(add: Any) -> None:
        add(OrderSpecs)

    def boom(calls: list[str]) -> None:
        calls.append("half")
        raise RuntimeError("half-way")

    host.register_plugin(_plugin("p_specs", register_hookspecs=hookimpl(register_hookspecs)), "p_specs")
    host.register_plugin(_plugin("p_ok", record_order=hookimpl(lambda calls: calls.append("ok"))), "p_ok")
    host.register_plugin(_plugin("p_boom", record_order=hookimpl(boom)), "p_boom")
    calls: list[str] = []
    undone: list[str] = []

    def undo(name: str, exc: BaseException) -> None:
        undone.append(name)
        calls.remove("half")

    errors = host.call_each("record_order", {"calls": calls}, on_error=undo)
    assert list(errors) == ["p_boom"] and str(errors["p_boom"]) == "half-way"
    assert calls == ["ok"] and undone == ["p_boom"]
    assert host.plugins["p_boom"].status == "failed" and "half-way" in (host.plugins["p_boom"].error or "")
    assert host.plugins["p_ok"].status == "loaded"


@pytest.mark.parametrize("option", ["wrapper", "hookwrapper"])
def test_a_hook_option_the_host_cannot_honour_fails_the_plugin_at_load_time(tmp_path: Path, option: str) -> None:
    def register_invocations(register: Any) -> Any:
        return (yield)

    host = _host(tmp_path)
    info = host.register_plugin(
        _plugin("p_wrap", register_invocations=hookimpl(**{option: True})(register_invocations)), "p_wrap"
    )
    assert info.status == "failed"
    assert "register_invocations" in (info.error or "") and "wrapper" in (info.error or "")
    assert "called on its own" in (info.error or "")
    assert host.pm.get_plugin("p_wrap") is None


def test_register_hookspecs_that_raises_adds_no_spec(tmp_path: Path) -> None:
    class HalfSpecs:
        @hookspec
        def register_half(self, add: Any) -> None:
            """Never added."""

    def register_hookspecs(add: Any) -> None:
        add(HalfSpecs)
        raise RuntimeError("changed my mind")

    host = _host(tmp_path)
    info = host.register_plugin(_plugin("p_half", register_hookspecs=hookimpl(register_hookspecs)), "p_half")
    assert info.status == "failed" and "changed my mind" in (info.error or "")
    assert not hasattr(host.pm.hook, "register_half")
    consumer = host.register_plugin(_plugin("p_use", register_half=hookimpl(lambda add: None)), "p_use")
    assert consumer.status == "failed" and "unknown hook(s) register_half" in (consumer.error or "")


def test_register_commands_that_raises_adds_no_command(tmp_path: Path) -> None:
    @click.command("half-added")
    def half_added() -> None:
        """Never reachable."""

    def register_commands(cli: click.Group) -> None:
        cli.add_command(half_added)
        raise RuntimeError("broken after adding")

    host = _host(tmp_path)
    host.register_plugin(_plugin("p_cmd", register_commands=hookimpl(register_commands)), "p_cmd")
    cli = click.Group("invokeai")
    host.add_commands(cli)
    assert "half-added" not in cli.commands
    assert host.plugins["p_cmd"].status == "failed" and "broken after adding" in (host.plugins["p_cmd"].error or "")


def test_a_command_clash_fails_the_later_plugin_and_keeps_the_first(tmp_path: Path) -> None:
    def adder(text: str) -> Any:
        @click.command("hello")
        def hello() -> None:
            click.echo(text)

        def register_commands(cli: click.Group) -> None:
            cli.add_command(hello)

        return hookimpl(register_commands)

    host = _host(tmp_path)
    host.register_plugin(_plugin("p_one", register_commands=adder("one")), "p_one")
    host.register_plugin(_plugin("p_two", register_commands=adder("two")), "p_two")
    cli = click.Group("invokeai")
    host.add_commands(cli)
    assert cli.commands["hello"].callback is not None
    from click.testing import CliRunner

    assert CliRunner().invoke(cli, ["hello"]).output.strip() == "one"
    two = host.plugins["p_two"]
    assert two.status == "failed" and "'hello' is already added by plugin 'p_one'" in (two.error or "")


def _clashing_node(value: int) -> type:
    from invokeai_core import BaseInvocation, BaseInvocationOutput, OutputField, invocation, invocation_output

    @invocation_output(f"w_clash_output_{value}")
    class Out(BaseInvocationOutput):
        value: int = OutputField(description="v")

    @invocation("w_clash")
    class Node(BaseInvocation):
        def invoke(self, context: Any) -> Out:
            return Out(value=value)

    return Node


def test_a_node_type_clash_is_decided_by_load_order_not_hook_order(tmp_path: Path) -> None:
    def registrar(cls: type, **options: Any) -> Any:
        def register_invocations(register: Any) -> None:
            register(cls)

        return hookimpl(**options)(register_invocations)

    early, late = _clashing_node(1), _clashing_node(2)
    host = _host(tmp_path)  # the registry is not built yet: both hooks run when it is
    host.register_plugin(_plugin("p_early", register_invocations=registrar(early)), "p_early")
    host.register_plugin(_plugin("p_late", register_invocations=registrar(late, tryfirst=True)), "p_late")
    assert host.registry.get("w_clash") is early  # p_late's hook ran first, p_early loaded first
    info = host.plugins["p_late"]
    assert info.status == "failed" and "p_early" in (info.error or "") and "p_late" in (info.error or "")


# -- the plugin-author surface --------------------------------------------------------------------
#: The modules a plugin may import (docs/plugins.md, "The plugin-author surface").
PUBLIC_MODULES = {"invokeai_core", "invokeai_core.testing", "invokeai_core.testing.contracts", "invokeai_core.cli.main"}
_IMPORT = re.compile(r"\b(?:from|import)\s+(invokeai_core(?:\.\w+)*)")


def test_bundled_plugins_and_the_template_import_only_the_public_surface() -> None:
    roots = [*sorted((REPO / "plugins").glob("*/src")), *sorted((REPO / "plugins").glob("*/tests"))]
    roots.append(REPO / "invokeai_plugin_template")
    offenders = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.suffix not in (".py", ".jinja") or "node_modules" in path.parts:
                continue
            for lineno, line in enumerate(path.read_text().splitlines(), 1):
                for module in _IMPORT.findall(line):
                    if module not in PUBLIC_MODULES:
                        offenders.append(f"{path.relative_to(REPO)}:{lineno}: {module}")
    assert offenders == [], "private kernel modules imported:\n" + "\n".join(offenders)


def documented_surface() -> set[str]:
    """The names docs/plugins.md lists under "The plugin-author surface"."""
    text = (REPO / "docs" / "plugins.md").read_text()
    section = text.split("## The plugin-author surface", 1)[1].split("\n## ", 1)[0]
    listing = section.split("The names of `invokeai_core.__all__`", 1)[1].split("Every name is imported", 1)[0]
    return set(re.findall(r"`(\w+)`", listing))


def test_the_documented_surface_is_exactly_all() -> None:
    assert documented_surface() == set(invokeai_core.__all__)
    assert set(invokeai_core.__all__) == set(invokeai_core._LAZY) | {"__version__", "hookimpl"}


def test_a_store_can_be_written_from_the_surface_alone() -> None:
    assert issubclass(MemorySessionQueue, invokeai_core.SessionQueueBase)
    assert invokeai_core.SessionQueueBase is SessionQueueBase
    assert isinstance(invokeai_core.InProcessEventBus(), EventServiceBase)
    assert invokeai_core.prepend_priority(None, 0) == 0 and invokeai_core.prepend_priority(5, 0) == 6
    assert NodeRegistry is invokeai_core.NodeRegistry

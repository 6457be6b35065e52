"""One test per hookspec (a meta-test keeps it that way), each through a real plugin object."""

from __future__ import annotations

import inspect
import json
import types
from pathlib import Path
from typing import Any

from conftest import run_cli, write_fake_plugin

from invokeai_core import hookimpl, hookspecs
from invokeai_core.config import load_config
from invokeai_core.invoker import Invoker
from invokeai_core.plugins.host import PluginHost
from invokeai_core.services.container import Services


def _hookspec_names() -> list[str]:
    return sorted(
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
    )


def test_every_hookspec_has_a_test() -> None:
    names = _hookspec_names()
    assert names == sorted(
        [
            "register_invocations",
            "register_services",
            "register_commands",
            "register_hookspecs",
            "register_node_migrations",
            "startup",
            "shutdown",
        ]
    )
    here = globals()
    for name in names:
        assert f"test_hook_{name}" in here, f"hookspec {name} has no test_hook_{name}"


def test_every_hookspec_is_typed_and_documented() -> None:
    for name in _hookspec_names():
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__.strip()) > 40, name
        sig = inspect.signature(fn)
        assert sig.return_annotation in ("None", None), name
        for p in sig.parameters.values():
            assert p.annotation is not inspect.Parameter.empty, f"{name}({p.name}) is untyped"


def _host(tmp_path: Path) -> PluginHost:
    return PluginHost(load_config(root=tmp_path, environ={}), allowlist=set(), strict=True).load()


def test_hook_register_invocations(tmp_path: Path) -> None:
    from invokeai_testpack import nodes

    plugin = types.ModuleType("p_inv")

    @hookimpl
    def register_invocations(register: Any) -> None:
        register(nodes.TpConstInvocation)

    plugin.register_invocations = register_invocations  # type: ignore[attr-defined]
    host = _host(tmp_path)
    host.register_plugin(plugin, "p_inv", version="3.0.0")
    entry = host.registry.entry("tp_const")
    assert entry.plugin == "p_inv" and entry.plugin_version == "3.0.0"
    assert host.plugins["p_inv"].nodes == ["tp_const"]


def test_hook_register_node_migrations(tmp_path: Path) -> None:
    from graph_file_nodes import BlurV2, blur_to_2

    plugin = types.ModuleType("p_mig")

    @hookimpl
    def register_invocations(register: Any) -> None:
        register(BlurV2)

    @hookimpl
    def register_node_migrations(register: Any) -> None:
        register("gf_blur", "2.0.0", blur_to_2, renamed_inputs={"radius": "size"})

    plugin.register_invocations = register_invocations  # type: ignore[attr-defined]
    plugin.register_node_migrations = register_node_migrations  # type: ignore[attr-defined]
    host = _host(tmp_path)
    host.register_plugin(plugin, "p_mig")
    [step] = host.registry.migrations.steps("gf_blur", "1.0.0", "2.0.0")
    assert step.plugin == "p_mig" and step.renamed_inputs == {"radius": "size"}
    assert host.plugins["p_mig"].hooks == ["register_invocations", "register_node_migrations"]
    host.unregister_plugin("p_mig")
    assert host.registry.migrations.steps("gf_blur", "1.0.0", "2.0.0") == []


class SpecialStore:
    """A plugin-provided service of a new kind."""

    def __init__(self, config: Any) -> None:
        self.root = config.root

    def hello(self) -> str:
        return "hello from the special store"


def test_hook_register_services(tmp_path: Path) -> None:
    plugin = types.ModuleType("p_svc")

    @hookimpl
    def register_services(register: Any) -> None:
        register("special", "mine", f"{__name__}:SpecialStore", description="demo", default=True)

    plugin.register_services = register_services  # type: ignore[attr-defined]
    host = _host(tmp_path)
    host.register_plugin(plugin, "p_svc")
    services = Services(host.config, host.service_registry, host.registry)
    store = services.get("special")
    assert isinstance(store, SpecialStore) and store.hello().startswith("hello")
    assert services.get(SpecialStore) is store
    assert host.plugins["p_svc"].services == ["special:mine"]


def test_hook_register_commands(tmp_path: Path, cli_root: Path) -> None:
    site = tmp_path / "site"
    src = '''
import click
from invokeai_core import hookimpl

@click.command("greet")
@click.argument("name")
def greet(name):
    """Say hello (added by a plugin)."""
    click.echo(f"hello {name}")

@hookimpl
def register_commands(cli):
    cli.add_command(greet)
'''
    write_fake_plugin(site, "fake-greeter", "greeter", "fake_greeter", src)
    env = {"PYTHONPATH": str(site)}
    help_text = run_cli("--help", root=cli_root, env=env)
    assert help_text.returncode == 0
    assert "greet" in help_text.stdout and "Say hello (added by a plugin)." in help_text.stdout
    res = run_cli("greet", "world", root=cli_root, env=env)
    assert res.returncode == 0 and res.stdout.strip() == "hello world"
    plugins = json.loads(run_cli("plugins", "--json", root=cli_root, env=env).stdout)
    assert next(p for p in plugins if p["name"] == "greeter")["hooks"] == ["register_commands"]


class RouteSpecs:
    """A hookspec another plugin adds (like the web plugin's register_routes)."""

    @hookspecs.hookspec
    def register_widgets(self, add: Any) -> None:
        """Add widgets."""


def test_hook_register_hookspecs(tmp_path: Path) -> None:
    provider = types.ModuleType("p_specs")

    @hookimpl
    def register_hookspecs(add: Any) -> None:
        add(RouteSpecs)

    provider.register_hookspecs = register_hookspecs  # type: ignore[attr-defined]
    consumer = types.ModuleType("p_widgets")

    @hookimpl
    def register_widgets(add: Any) -> None:
        add("dial")

    consumer.register_widgets = register_widgets  # type: ignore[attr-defined]
    host = _host(tmp_path)
    host.register_plugin(provider, "p_specs")
    host.register_plugin(consumer, "p_widgets")  # strict host: an unknown hook would raise here
    host.pm.check_pending()
    got: list[str] = []
    host.pm.hook.register_widgets(add=got.append)
    assert got == ["dial"]


def test_a_hook_nobody_specified_is_refused(tmp_path: Path) -> None:
    consumer = types.ModuleType("p_orphan")

    @hookimpl
    def register_gadgets(add: Any) -> None:
        pass

    consumer.register_gadgets = register_gadgets  # type: ignore[attr-defined]
    host = PluginHost(load_config(root=tmp_path, environ={}), allowlist=set(), strict=False).load()
    info = host.register_plugin(consumer, "p_orphan")
    assert info.status == "failed" and "register_gadgets" in (info.error or "")


def _lifecycle_plugin(calls: list[tuple[str, Any]]) -> types.ModuleType:
    plugin = types.ModuleType("p_life")

    @hookimpl
    def startup(invoker: Invoker) -> None:
        calls.append(("startup", invoker))

    @hookimpl
    def shutdown(invoker: Invoker) -> None:
        calls.append(("shutdown", invoker))

    plugin.startup = startup  # type: ignore[attr-defined]
    plugin.shutdown = shutdown  # type: ignore[attr-defined]
    return plugin


def test_hook_startup(tmp_path: Path) -> None:
    calls: list[tuple[str, Any]] = []
    host = _host(tmp_path)
    host.register_plugin(_lifecycle_plugin(calls), "p_life")
    invoker = Invoker.from_config(host.config, host)
    invoker.start()
    try:
        assert calls == [("startup", invoker)]
    finally:
        invoker.stop()


def test_hook_shutdown(tmp_path: Path) -> None:
    calls: list[tuple[str, Any]] = []
    host = _host(tmp_path)
    host.register_plugin(_lifecycle_plugin(calls), "p_life")
    with Invoker.from_config(host.config, host) as invoker:
        pass
    assert [c[0] for c in calls] == ["startup", "shutdown"]
    assert calls[1][1] is invoker


def test_a_failing_startup_hook_does_not_stop_the_invoker(tmp_path: Path) -> None:
    plugin = types.ModuleType("p_bad_start")

    @hookimpl
    def startup(invoker: Invoker) -> None:
        raise RuntimeError("cannot open my resource")

    plugin.startup = startup  # type: ignore[attr-defined]
    host = PluginHost(load_config(root=tmp_path, environ={}), allowlist=set(), strict=False).load()
    host.register_plugin(plugin, "p_bad_start")
    with Invoker.from_config(host.config, host) as invoker:
        session = invoker.run_graph({"nodes": {"c": {"id": "c", "type": "collect"}}, "edges": []}, timeout=10)
    assert session.status == "completed"
    assert host.plugins["p_bad_start"].status == "failed"
    assert "cannot open my resource" in (host.plugins["p_bad_start"].error or "")


def test_hook_modules_of_installed_plugins_stay_light() -> None:
    """The testpack's hook module imports its node module only inside the hook."""
    import invokeai_testpack.hooks as hooks

    src = inspect.getsource(hooks)
    module_level, body = src.split("def register_invocations", 1)
    assert "invokeai_testpack.nodes" not in module_level and "import nodes" not in module_level
    assert "from invokeai_testpack import nodes" in body

"""Plugin discovery and loading: real entry points, failures contained, allow/block lists, strict mode."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli, write_fake_plugin

from invokeai_core.config import load_config
from invokeai_core.errors import PluginError
from invokeai_core.plugins.host import PluginHost

NODE_SOURCE = """
from invokeai_core import (BaseInvocation, BaseInvocationOutput, InputField, OutputField,
                           InvocationContext, hookimpl, invocation, invocation_output)

@invocation_output("{prefix}_output")
class Out(BaseInvocationOutput):
    value: int = OutputField(description="v")

@invocation("{type_id}")
class Node(BaseInvocation):
    value: int = InputField(default=7, description="v")
    def invoke(self, context: InvocationContext) -> Out:
        return Out(value=self.value)
"""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path where tests create installed-looking plugin distributions."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        if name.startswith("fake_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def make_host(tmp_path: Path, **kwargs: object) -> PluginHost:
    config = load_config(root=tmp_path / "root", environ={})
    kwargs.setdefault("allowlist", None)
    kwargs.setdefault("strict", False)
    return PluginHost(config, **kwargs).load()  # type: ignore[arg-type]


def test_installed_testpack_is_discovered_through_its_entry_point(tmp_path: Path) -> None:
    host = make_host(tmp_path)
    info = host.plugins["testpack"]
    assert info.status == "loaded"
    assert info.dist == "invokeai-testpack"
    assert info.version == "1.2.3"
    assert info.hooks == ["register_invocations"]
    registry = host.registry
    assert registry.entry("tp_const").plugin == "testpack"
    assert registry.entry("tp_const").plugin_version == "1.2.3"
    assert "tp_const" in host.plugins["testpack"].nodes
    assert host.plugins["core"].builtin and host.plugins["core"].status == "loaded"


def test_plugin_raising_on_import_is_reported_and_skipped(tmp_path: Path, site: Path) -> None:
    write_fake_plugin(site, "fake-broken", "broken", "fake_broken", "raise RuntimeError('kaboom at import')")
    host = make_host(tmp_path)
    info = host.plugins["broken"]
    assert info.status == "failed"
    assert "RuntimeError: kaboom at import" in (info.error or "")
    assert host.plugins["testpack"].status == "loaded"
    assert "tp_const" in host.registry


def test_plugin_with_missing_dependency_gets_an_install_hint(tmp_path: Path, site: Path) -> None:
    write_fake_plugin(site, "fake-missing", "missing", "fake_missing", "import not_a_real_module_xyz\n")
    host = make_host(tmp_path)
    info = host.plugins["missing"]
    assert info.status == "failed"
    assert "not_a_real_module_xyz" in (info.error or "")
    assert info.hint is not None and "pip install" in info.hint and "fake-missing" in info.hint


def test_misspelled_hook_fails_loudly(tmp_path: Path, site: Path) -> None:
    src = "from invokeai_core import hookimpl\n@hookimpl\ndef register_invocation(register):\n    pass\n"
    write_fake_plugin(site, "fake-typo", "typo", "fake_typo", src)
    host = make_host(tmp_path)
    info = host.plugins["typo"]
    assert info.status == "failed"
    assert "register_invocation" in (info.error or "")
    assert host.pm.get_plugin("typo") is None
    host.pm.check_pending()  # the remaining plugins are all valid


def test_registration_that_raises_is_rolled_back(tmp_path: Path, site: Path) -> None:
    src = NODE_SOURCE.format(prefix="fake_half", type_id="fake_half_node") + (
        "\n@hookimpl\ndef register_invocations(register):\n    register(Node)\n    raise ValueError('half way')\n"
    )
    write_fake_plugin(site, "fake-half", "half", "fake_half", src)
    host = make_host(tmp_path)
    assert "fake_half_node" not in host.registry
    info = host.plugins["half"]
    assert info.status == "failed" and "half way" in (info.error or "")
    assert info.nodes == []
    assert "tp_const" in host.registry


def test_duplicate_node_type_names_both_plugins(tmp_path: Path, site: Path) -> None:
    src = NODE_SOURCE.format(prefix="fake_dupe", type_id="tp_const") + (
        "\n@hookimpl\ndef register_invocations(register):\n    register(Node)\n"
    )
    write_fake_plugin(site, "fake-dupe", "zz_dupe", "fake_dupe", src)
    host = make_host(tmp_path)
    assert host.plugins["zz_dupe"].status == "loaded"  # node registration is lazy...
    _ = host.registry  # ...and the duplicate is found when it runs
    info = host.plugins["zz_dupe"]
    assert info.status == "failed"
    assert "testpack" in (info.error or "") and "zz_dupe" in (info.error or "") and "tp_const" in (info.error or "")
    assert host.registry.entry("tp_const").plugin == "testpack"


def test_incompatible_core_requirement_is_refused(tmp_path: Path, site: Path) -> None:
    write_fake_plugin(site, "fake-future", "future", "fake_future", "x = 1\n", requires=["invokeai-core>=9,<10"])
    host = make_host(tmp_path)
    info = host.plugins["future"]
    assert info.status == "failed"
    assert "invokeai-core>=9,<10" in (info.error or "") or "<10,>=9" in (info.error or "")
    assert "fake_future" not in sys.modules  # not even imported


def test_strict_mode_turns_a_failure_into_an_error(tmp_path: Path, site: Path) -> None:
    write_fake_plugin(site, "fake-broken2", "broken2", "fake_broken2", "raise ImportError('nope')")
    with pytest.raises(PluginError, match="broken2"):
        make_host(tmp_path, strict=True)


def test_allowlist_and_blocklist(tmp_path: Path) -> None:
    host = make_host(tmp_path, allowlist=set())
    assert host.plugins["testpack"].status == "disabled"
    assert host.plugins["core"].status == "loaded"  # built-ins are always loaded
    assert "tp_const" not in host.registry and "iterate" in host.registry

    host = make_host(tmp_path, allowlist={"testpack"})
    assert host.plugins["testpack"].status == "loaded"
    assert host.plugins.get("nodes") is None or host.plugins["nodes"].status == "disabled"

    host = make_host(tmp_path, blocklist=["testpack", "core"])
    assert host.plugins["testpack"].status == "blocked"
    assert host.plugins["core"].status == "loaded"  # the kernel's defaults cannot be blocked


def test_env_allowlist_and_config_blocklist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKEAI_LOAD_PLUGINS", "")
    host = PluginHost(load_config(root=tmp_path, environ={}), strict=False).load()
    assert host.plugins["testpack"].status == "disabled"
    monkeypatch.delenv("INVOKEAI_LOAD_PLUGINS")
    config = load_config(root=tmp_path, overrides={"plugins.block": ["testpack"]}, environ={})
    host = PluginHost(config, strict=False).load()
    assert host.plugins["testpack"].status == "blocked"


def test_loading_is_idempotent_and_lazy(tmp_path: Path) -> None:
    code = f"""
import sys
from invokeai_core.config import load_config
from invokeai_core.plugins.host import PluginHost
host = PluginHost(load_config(root={str(tmp_path)!r}, environ={{}}), allowlist=None, strict=False).load()
assert 'invokeai_testpack.hooks' in sys.modules
assert 'invokeai_testpack.nodes' not in sys.modules, 'node modules must wait for the registry'
host.load()
first = host.registry
assert 'invokeai_testpack.nodes' in sys.modules
assert host.registry is first and host.load() is host
assert list(host.plugins).count('testpack') == 1
print('ok')
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


def test_cli_reports_a_broken_plugin_and_still_runs(tmp_path: Path, cli_root: Path) -> None:
    site = tmp_path / "site2"
    write_fake_plugin(site, "fake-cli-broken", "clibroken", "fake_cli_broken", "raise RuntimeError('cli kaboom')")
    env = {"PYTHONPATH": str(site)}
    res = run_cli("plugins", "--json", root=cli_root, env=env)
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert plugins["clibroken"]["status"] == "failed"
    assert "cli kaboom" in plugins["clibroken"]["error"]
    assert plugins["testpack"]["status"] == "loaded"
    text = run_cli("plugins", root=cli_root, env=env)
    assert "clibroken: failed: RuntimeError: cli kaboom" in text.stdout
    graph = {"nodes": {"c": {"id": "c", "type": "tp_const", "value": 4}}, "edges": []}
    res = run_cli("run", "-f", "-", "--json", root=cli_root, env=env, input=json.dumps(graph))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["results"]["c"]["value"] == 4.0
    strict = run_cli("plugins", root=cli_root, env={**env, "INVOKEAI_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2
    assert "clibroken" in strict.stderr and strict.stderr.count("\n") == 1


def test_a_new_pack_clashing_with_a_bundled_one_is_the_one_that_fails(tmp_path: Path, site: Path) -> None:
    """The README's first example once named its node `add`: installed, it knocked out invokeai-nodes
    (plugins loaded in name order). Bundled distributions load first, so the newcomer fails instead."""
    src = NODE_SOURCE.format(prefix="fake_aaa", type_id="add") + (
        "\n@hookimpl\ndef register_invocations(register):\n    register(Node)\n"
    )
    write_fake_plugin(site, "aaa-clash", "aaa", "fake_aaa_clash", src)  # sorts before "nodes"
    host = make_host(tmp_path)
    assert list(host.plugins).index("nodes") < list(host.plugins).index("aaa")
    registry = host.registry
    assert registry.entry("add").plugin == "nodes" and "blank_image" in registry
    info = host.plugins["aaa"]
    assert info.status == "failed" and "'add'" in (info.error or "")
    assert "'nodes'" in (info.error or "") and "'aaa'" in (info.error or "")
    assert "loaded first keeps the name" in (info.hint or "")
    assert host.plugins["nodes"].status == "loaded" and len(host.plugins["nodes"].nodes) >= 40


def test_among_other_plugins_the_one_installed_first_keeps_a_name(tmp_path: Path, site: Path) -> None:
    import os

    for dist, entry, module in (("aaa-late", "aaa_late", "fake_aaa_late"), ("zzz-early", "zzz_early", "fake_zzz")):
        src = NODE_SOURCE.format(prefix=module, type_id="clash_node") + (
            "\n@hookimpl\ndef register_invocations(register):\n    register(Node)\n"
        )
        write_fake_plugin(site, dist, entry, module, src)
    os.utime(site / "zzz_early-0.1.0.dist-info", (1_000_000_000, 1_000_000_000))  # installed long before
    host = make_host(tmp_path)
    assert host.registry.entry("clash_node").plugin == "zzz_early"
    late = host.plugins["aaa_late"]
    assert late.status == "failed" and "zzz_early" in (late.error or "") and "aaa_late" in (late.error or "")


def test_strict_mode_is_one_line_and_exit_2_wherever_the_plugin_fails(tmp_path: Path, cli_root: Path) -> None:
    """A plugin whose register_invocations raises fails when the node registry is first needed (inside
    the command): still one line and exit 2, the traceback only at log level debug."""
    site = tmp_path / "site3"
    src = (
        "from invokeai_core import hookimpl\n"
        "@hookimpl\ndef register_invocations(register):\n    raise RuntimeError('half broken')\n"
    )
    write_fake_plugin(site, "fake-late-broken", "latebroken", "fake_late_broken", src)
    env = {"PYTHONPATH": str(site), "INVOKEAI_STRICT_PLUGINS": "1"}
    for args in (["nodes"], ["run", "collect"], ["queue", "enqueue", "-"]):
        res = run_cli(*args, root=cli_root, env=env, input='{"graph": {"nodes": {}, "edges": []}}')
        assert res.returncode == 2, (args, res.stderr)
        assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, (args, res.stderr)
        assert "latebroken" in res.stderr and "RuntimeError: half broken" in res.stderr
    debug = run_cli("-o", "log_level=debug", "nodes", root=cli_root, env=env)
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "half broken" in debug.stderr

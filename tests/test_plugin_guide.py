"""Keeps the plugin author guide (docs/plugins.md) honest.

* Every hookspec, the kernel's and those that installed plugins add through `register_hookspecs`,
  appears in the guide with its exact signature (rendered by `hook_signature`), has an example
  `@hookimpl`, and has a test named `test_hook_<name>` (tests/test_hooks.py for the kernel's, the
  plugin's own tests for plugin hooks).
* Every Python example of the guide executes, its nodes run through the Invoker, and its image store
  passes the service contract tests.
* The README's "Writing a node" example, installed as its own distribution with the entry point the
  README shows, adds its node beside the standard pack's, which all keep working.
"""

from __future__ import annotations
import __future__

import inspect
import json
import os
import re
import sys
import textwrap
import tomllib
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import REPO, run_cli, write_fake_plugin
from PIL import Image

from invokeai_core import hookimpl, hookspecs
from invokeai_core.config import load_config
from invokeai_core.errors import GraphError
from invokeai_core.events import EventBase, InvocationProgressEvent
from invokeai_core.invocations.fields import InputField, OutputField
from invokeai_core.invoker import Invoker
from invokeai_core.plugins.host import PluginHost
from invokeai_core.services.base import ImageFileStorageBase
from invokeai_core.testing import GraphRun
from invokeai_core.testing.contracts import ImageFileStoreContract

GUIDE = REPO / "docs" / "plugins.md"
KERNEL_HOOKS = {"register_invocations", "register_services", "register_commands", "register_hookspecs"}
KERNEL_HOOKS |= {"register_node_migrations"}
KERNEL_HOOKS |= {"startup", "shutdown"}
#: Top-level packages the guide's examples import that stand for the reader's own code.
EXAMPLE_PACKAGES = {"my_nodes", "my_store"}


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


# -- the canonical rendering of a hook's signature ----------------------------------------------
def _annotation(annotation: Any) -> str:
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def _default(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def hook_signature(fn: Callable[..., Any], name: str | None = None) -> str:
    """`name(param: Annotation, *, kw: Annotation = default) -> Return`, annotations as written in the
    source (they are strings under `from __future__ import annotations`), string defaults in double
    quotes, `self` dropped (hookspecs may be methods of a class)."""
    sig = inspect.signature(fn)
    parts: list[str] = []
    star = False
    for p in sig.parameters.values():
        if p.name == "self":
            continue
        if p.kind is inspect.Parameter.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        text = p.name
        if p.annotation is not inspect.Parameter.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {_default(p.default)}"
        parts.append(text)
    returns = "" if sig.return_annotation is inspect.Signature.empty else f" -> {_annotation(sig.return_annotation)}"
    return f"{name or fn.__name__}({', '.join(parts)}){returns}"


def test_hook_signature_rendering() -> None:
    assert (
        hook_signature(hookspecs.register_invocations)
        == "register_invocations(register: Callable[[type[BaseInvocation]], None]) -> None"
    )

    class Specs:
        @hookspecs.hookspec
        def register_things(self, add: Callable[[str], None], *, limit: int = 3, label: str = "x") -> None:
            """Things."""

    assert hook_signature(Specs.register_things) == (
        'register_things(add: Callable[[str], None], *, limit: int = 3, label: str = "x") -> None'
    )


# -- every hookspec ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def all_hookspecs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Callable[..., Any]]:
    """The kernel's hookspecs and those of every installed plugin (added through register_hookspecs)."""
    root = tmp_path_factory.mktemp("root")
    host = PluginHost(load_config(root=root, environ={}), allowlist=None, strict=False).load()
    specs: dict[str, Callable[..., Any]] = {}
    for name, caller in vars(host.pm.hook).items():
        spec = getattr(caller, "spec", None)
        if spec is not None:
            specs[name] = spec.function
    return specs


def test_the_kernel_hookspecs_are_all_found(all_hookspecs: dict[str, Callable[..., Any]]) -> None:
    kernel = {
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, f"{hookspecs.PROJECT_NAME}_spec")
    }
    assert kernel == KERNEL_HOOKS
    assert kernel <= set(all_hookspecs)


def test_every_hookspec_appears_in_the_guide_with_its_exact_signature(
    all_hookspecs: dict[str, Callable[..., Any]],
) -> None:
    text = guide_text()
    missing = [hook_signature(fn, name) for name, fn in sorted(all_hookspecs.items())]
    missing = [sig for sig in missing if sig not in text]
    assert missing == [], f"docs/plugins.md lacks these hook signatures: {missing}"


def test_every_hookspec_has_a_section_and_an_example_in_the_guide(
    all_hookspecs: dict[str, Callable[..., Any]],
) -> None:
    text = guide_text()
    for name in all_hookspecs:
        assert re.search(rf"^### `{name}`$", text, re.M) or f"def {name}(" in text, name
        assert re.search(rf"^@hookimpl(\(.*\))?\ndef {name}\(", text, re.M), f"no @hookimpl example of {name}"


def test_the_service_registrar_signature_is_in_the_guide() -> None:
    signature = hook_signature(hookspecs.ServiceRegistrar.__call__, "register")
    assert signature == (
        'register(kind: str, name: str, path: str, *, description: str = "", install_hint: str | None = None, '
        "default: bool = False) -> None"
    )
    assert signature in guide_text()


def _test_sources() -> Iterator[Path]:
    yield from (REPO / "tests").glob("**/test_*.py")
    yield from (REPO / "plugins").glob("*/tests/**/test_*.py")


def test_every_hookspec_has_a_test(all_hookspecs: dict[str, Callable[..., Any]]) -> None:
    defined = set()
    for path in _test_sources():
        defined |= set(re.findall(r"^def (test_hook_\w+)\(", path.read_text(encoding="utf-8"), re.M))
    missing = sorted(f"test_hook_{name}" for name in all_hookspecs if f"test_hook_{name}" not in defined)
    assert missing == [], (
        f"hookspecs without a test: {missing}; add it to the tests of the plugin that adds the hookspec "
        "(plugins/<dist>/tests/) or, for the kernel's, to tests/test_hooks.py"
    )
    import test_hooks  # the kernel's: one test per hookspec, each through a real plugin object

    for name in KERNEL_HOOKS:
        assert callable(getattr(test_hooks, f"test_hook_{name}", None)), name


# -- the rest of the API the guide documents ----------------------------------------------------
def test_every_field_option_is_documented() -> None:
    text = guide_text()
    for fn in (InputField, OutputField):
        for name in inspect.signature(fn).parameters:
            assert f"{name}=" in text, f"{fn.__name__}({name}=...) is not in the guide"


def test_every_testing_fixture_is_documented() -> None:
    from _pytest.fixtures import FixtureFunctionDefinition

    import invokeai_core.testing as testing

    fixtures = {
        name
        for name, obj in vars(testing).items()
        if name.startswith("invokeai_") and isinstance(obj, FixtureFunctionDefinition)
    }
    assert {"invokeai_run_graph", "invokeai_register_nodes", "invokeai_invoker"} <= fixtures
    text = guide_text()
    assert [f for f in sorted(fixtures) if f"`{f}" not in text] == []


def test_every_contract_class_is_documented() -> None:
    import invokeai_core.testing.contracts as contracts

    documented = set(re.findall(r"`(\w+Contract)`", guide_text()))
    defined = {n for n, obj in vars(contracts).items() if n.endswith("Contract") and isinstance(obj, type)}
    assert documented == defined


# -- the examples run ---------------------------------------------------------------------------
_FENCE = re.compile(r"^(?P<indent> *)```python\n(?P<body>.*?)^(?P=indent)```$", re.M | re.S)


def python_blocks() -> list[str]:
    return [textwrap.dedent(m.group("body")) for m in _FENCE.finditer(guide_text())]


def exec_block(code: str, name: str) -> types.ModuleType:
    """Execute one example as the module `name`. A block of bare signatures (no imports) is compiled with
    postponed annotations, as the hookspecs module is; the others exactly as written."""
    module = types.ModuleType(name)
    sys.modules[name] = module
    try:
        flags = 0 if re.search(r"^\s*(import|from) ", code, re.M) else __future__.annotations.compiler_flag
        exec(compile(code, f"<docs/plugins.md:{name}>", "exec", flags=flags, dont_inherit=True), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@pytest.fixture
def guide_module() -> Iterator[Callable[[str], types.ModuleType]]:
    """Execute the example that defines `marker` and return it as a module."""
    names: list[str] = []

    def load(marker: str) -> types.ModuleType:
        blocks = [b for b in python_blocks() if marker in b]
        assert len(blocks) == 1, f"{len(blocks)} examples contain {marker!r}"
        name = f"guide_example_{len(names)}_{abs(hash(marker))}"
        names.append(name)
        return exec_block(blocks[0], name)

    yield load
    for name in names:
        sys.modules.pop(name, None)


def test_every_python_example_executes() -> None:
    blocks = python_blocks()
    assert len(blocks) >= 15
    for i, code in enumerate(blocks):
        name = f"guide_block_{i}"
        try:
            exec_block(code, name)
        except ModuleNotFoundError as e:
            root = (e.name or "").split(".")[0]
            assert root in EXAMPLE_PACKAGES, f"example {i} imports a missing module: {e}\n{code}"
        finally:
            sys.modules.pop(name, None)


def test_the_guides_nodes_run_through_the_invoker(
    guide_module: Callable[[str], types.ModuleType],
    invokeai_register_nodes: Callable[..., Any],
    invokeai_run_graph: Callable[..., GraphRun],
    invokeai_invoker: Invoker,
) -> None:
    lerp = guide_module("class LerpInvocation")
    resize = guide_module("class ResizeInvocation")
    slow = guide_module("class SlowCountInvocation")
    blur = guide_module("class BlurSizeInvocation")
    invokeai_register_nodes(
        lerp.LerpInvocation, resize.ResizeInvocation, slow.SlowCountInvocation, blur.BlurSizeInvocation
    )
    photo = invokeai_invoker.services.image_service.create(Image.new("RGB", (40, 20), "red"))
    run = invokeai_run_graph(
        {
            "nodes": {
                "lerp": {"id": "lerp", "type": "guide_lerp", "b": 10},
                "fit": {
                    "id": "fit",
                    "type": "guide_resize",
                    "image": {"image_name": photo.image_name},
                    "width": 20,
                    "height": 20,
                    "fit": "contain",
                },
                "count": {"id": "count", "type": "guide_slow_count", "steps": 3},
                "old": {"id": "old", "type": "guide_blur_size", "radius": 3},  # as saved by version 1.0.x
            },
            "edges": [],
        }
    )
    assert run.status == "completed", run.errors
    assert run["lerp"].value == 5.0
    assert (run["fit"].width, run["fit"].height) == (20, 10)
    assert run["count"].count == 3
    assert run["old"].size == 3.0
    with pytest.raises(GraphError, match="field 't'"):
        invokeai_run_graph({"nodes": {"l": {"id": "l", "type": "guide_lerp", "b": 1, "t": 2}}, "edges": []})


def test_the_guides_preflight_example_refuses_a_missing_image_before_anything_runs(
    guide_module: Callable[[str], types.ModuleType],
    invokeai_register_nodes: Callable[..., Any],
    invokeai_run_graph: Callable[..., GraphRun],
    invokeai_invoker: Invoker,
) -> None:
    example = guide_module("class ImageNameInvocation")
    invokeai_register_nodes(example.ImageNameInvocation)
    with pytest.raises(GraphError, match="node 'n', field 'name': no image named 'ghost'"):
        invokeai_invoker.create_session({"nodes": {"n": {"id": "n", "type": "guide_image_name", "name": "ghost"}}})
    photo = invokeai_invoker.services.image_service.create(Image.new("RGB", (4, 4))).image_name
    run = invokeai_run_graph({"nodes": {"n": {"id": "n", "type": "guide_image_name", "name": photo}}, "edges": []})
    assert run["n"].value == photo


def test_the_guides_slow_node_reports_progress_and_stops_when_canceled(
    guide_module: Callable[[str], types.ModuleType],
    invokeai_register_nodes: Callable[..., Any],
    invokeai_invoker: Invoker,
) -> None:
    slow = guide_module("class SlowCountInvocation")
    invokeai_register_nodes(slow.SlowCountInvocation)
    steps: list[int] = []

    def on_progress(event: EventBase) -> None:
        assert isinstance(event, InvocationProgressEvent) and event.session_id is not None
        steps.append(event.step)
        if event.step == 2:
            invokeai_invoker.cancel(event.session_id)

    invokeai_invoker.services.events.subscribe(on_progress, names=["invocation_progress"])
    graph = {"nodes": {"c": {"id": "c", "type": "guide_slow_count", "steps": 50}}, "edges": []}
    session = invokeai_invoker.run_graph(graph, timeout=30)
    assert session.status == "canceled" and steps == [1, 2] and session.errors_by_source() == {}


def test_the_guides_command_example(guide_module: Callable[[str], types.ModuleType], tmp_path: Path) -> None:
    from invokeai_core.cli.state import CliState, GlobalOptions

    commands = guide_module('@click.command("sunset-info")')
    (tmp_path / "invokeai.toml").write_text('[plugins.sunset]\npalette = "dusk"\n')
    state = CliState(GlobalOptions(root=str(tmp_path)))
    res = CliRunner().invoke(commands.sunset_info, [], obj=state)
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["settings: {'palette': 'dusk'}", "nodes: 0"]


def test_the_guides_hookspec_example(guide_module: Callable[[str], types.ModuleType], tmp_path: Path) -> None:
    provider = guide_module("class PaletteSpecs")
    consumer = types.ModuleType("guide_palette_consumer")

    @hookimpl
    def register_palettes(add: Callable[[str, list[str]], None]) -> None:
        add("dusk", ["#201040", "#ff8000"])

    consumer.register_palettes = register_palettes  # type: ignore[attr-defined]
    host = PluginHost(load_config(root=tmp_path, environ={}), allowlist=set(), strict=True).load()
    host.register_plugin(provider, "guide_palettes")
    host.register_plugin(consumer, "guide_palette_consumer")
    got: dict[str, list[str]] = {}
    host.pm.hook.register_palettes(add=got.__setitem__)
    assert got == {"dusk": ["#201040", "#ff8000"]}


class TestTheGuidesImageStore(ImageFileStoreContract):
    """The guide's example image store passes the kernel's contract for the `images` kind."""

    @pytest.fixture
    def store(self, guide_module: Callable[[str], types.ModuleType]) -> ImageFileStorageBase:
        module = guide_module("class MemoryImageFileStorage")
        store: ImageFileStorageBase = module.MemoryImageFileStorage()
        return store

    def stored_files(self, store: ImageFileStorageBase) -> set[str] | None:
        names: list[str] = store.list_names() or []
        return {f"images/{n}" for n in names} | {f"thumbnails/{n}.webp" for n in names}


def test_hook_register_routes(
    guide_module: Callable[[str], types.ModuleType], all_hookspecs: dict[str, Callable[..., Any]], tmp_path: Path
) -> None:
    """invokeai-web's hook, through the guide's example: its route is served and reaches the Invoker.
    (Skipped where invokeai-web, which adds the hookspec, is not installed.)"""
    if "register_routes" not in all_hookspecs:
        pytest.skip("invokeai-web, which adds register_routes, is not installed")
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from invokeai_testpack.nodes import TpConstInvocation

    from invokeai_core.testing import make_plugin

    routes = guide_module("def register_routes(app: Any) -> None:\n    from fastapi")
    host = PluginHost(load_config(root=tmp_path, environ={}), allowlist={"web"}, strict=True).load()
    host.register_plugin(make_plugin(TpConstInvocation), "sunset")
    host.register_plugin(routes, "sunset_routes")  # strict: an unknown hook would raise here
    with Invoker.from_config(host.config, host) as invoker:
        app = FastAPI()
        app.state.api_prefix = "/api/v1"
        app.state.invoker = invoker
        host.pm.hook.register_routes(app=app)
        response = TestClient(app).get("/api/v1/sunset/nodes")
    assert response.status_code == 200 and response.json() == ["tp_const"]


def test_the_readmes_node_example_installs_beside_the_standard_nodes(tmp_path: Path) -> None:
    section = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Writing a node\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    code = re.search(r"^```python\n(.*?)^```$", section, re.M | re.S)
    pyproject = re.search(r"^```toml\n(.*?)^```$", section, re.M | re.S)
    assert code is not None and pyproject is not None
    project = tomllib.loads(pyproject.group(1))["project"]
    ((entry_name, module),) = project["entry-points"]["invokeai.plugins"].items()
    site = tmp_path / "site"
    write_fake_plugin(site, "my-nodes", entry_name, module, code.group(1), requires=project["dependencies"])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)}
    root = tmp_path / "root"
    plugins = {p["name"]: p for p in json.loads(run_cli("plugins", "--json", root=root, env=env).stdout)}
    assert plugins[entry_name]["status"] == "loaded" and plugins[entry_name]["nodes"] == ["mynodes_add"]
    assert plugins["nodes"]["status"] == "loaded" and len(plugins["nodes"]["nodes"]) == 42
    added = run_cli("run", "mynodes_add --a 2 --b 3", "--json", root=root, env=env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["results"]["1"] == {"type": "mynodes_sum_output", "value": 5}
    standard = run_cli("run", "blank_image --width 8 --height 8 | img_blur --radius 1", root=root, env=env)
    assert standard.returncode == 0, standard.stderr

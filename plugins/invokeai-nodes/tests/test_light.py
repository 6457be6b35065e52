"""Loading the plugin stays light, and `invokeai nodes` shows the pack, in fresh subprocesses.

Pillow and dynamicprompts are imported when an image or prompt node runs, never when the plugin
loads, its nodes are listed or described, or a graph of them is validated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ["PIL", "dynamicprompts", "pyparsing", "jinja2", "numpy", "torch"]

PROBE = """
import json, sys
import invokeai_nodes.hooks
loaded_by_hooks = sorted(m for m in {heavy!r} if m in sys.modules)
from invokeai_core import load_config
from invokeai_core import Graph
from invokeai_core import PluginHost
host = PluginHost(load_config(environ={{}})).load()
assert host.plugins["nodes"].status == "loaded", host.plugins["nodes"].error
types = [e.cls.invocation_type for e in host.registry.entries() if e.plugin == "nodes"]
schemas = [host.registry.node_schema(t) for t in types]
Graph.from_dict({graph!r}, host.registry, require_inputs=True)
print(json.dumps({{"hooks": loaded_by_hooks, "all": sorted(m for m in {heavy!r} if m in sys.modules),
                  "count": len(types)}}))
"""

IMAGE_GRAPH = {
    "nodes": {
        "blank": {"id": "blank", "type": "blank_image", "width": 8, "height": 8, "color": "#ff0000"},
        "blur": {"id": "blur", "type": "img_blur"},
        "prompt": {"id": "prompt", "type": "dynamic_prompt", "prompt": "{a|b}"},
    },
    "edges": [{"source": {"node_id": "blank", "field": "image"}, "destination": {"node_id": "blur", "field": "image"}}],
}


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update({"INVOKEAI_ROOT": str(root), "INVOKEAI_LOAD_PLUGINS": "nodes", "HF_HUB_OFFLINE": "1"})
    return env


def test_loading_listing_and_validating_import_no_heavy_library(tmp_path: Path) -> None:
    code = PROBE.format(heavy=HEAVY, graph=IMAGE_GRAPH)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report == {"hooks": [], "all": [], "count": 42}


@pytest.fixture
def invokeai_exe() -> str:
    exe = Path(sys.executable).parent / "invokeai"
    if not exe.exists():
        pytest.skip("the invokeai command is not installed next to this Python")
    return str(exe)


def test_invokeai_nodes_lists_every_node_under_its_category(tmp_path: Path, invokeai_exe: str) -> None:
    from test_nodes import NODES_BY_CATEGORY

    res = subprocess.run([invokeai_exe, "nodes"], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line for line in res.stdout.splitlines()[1:] if line.strip()}
    for category, type_ids in NODES_BY_CATEGORY.items():
        for type_id in type_ids:
            assert type_id in rows, f"{type_id} missing from `invokeai nodes`"
            assert f"  {category}  " in rows[type_id] and "  nodes  " in rows[type_id], rows[type_id]
    detail = subprocess.run(
        [invokeai_exe, "nodes", "img_blur"], capture_output=True, text=True, env=_env(tmp_path), timeout=60
    )
    assert detail.returncode == 0, detail.stderr
    assert "img_blur: Blur Image" in detail.stdout and "category images" in detail.stdout
    assert "The blur radius in pixels" in detail.stdout


def test_invokeai_nodes_imports_no_heavy_library(tmp_path: Path) -> None:
    code = (
        "import sys; sys.argv = ['invokeai', 'nodes', '--json']\n"
        "from invokeai_core.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"sys.stderr.write('MODULES=' + repr(sorted(m for m in {HEAVY!r} if m in sys.modules)) + '\\n')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert "MODULES=[]" in res.stderr, res.stderr[-2000:]
    schemas = json.loads(res.stdout)
    assert schemas["img_channel_offset"]["category"] == "images" and "dynamic_prompt" in schemas

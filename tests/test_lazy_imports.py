"""Start-up stays light: no heavy library is imported by the kernel, `--help`, `nodes` or `plugins`,
with every plugin of the environment installed. Checked in fresh subprocesses via sys.modules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = [
    "torch",
    "diffusers",
    "transformers",
    "fastapi",
    "starlette",
    "boto3",
    "botocore",
    "socketio",
    "uvicorn",
    "numpy",
    "accelerate",
    "safetensors",
    "psycopg",
    "psycopg_pool",
    "redis",
    "temporalio",
    "spandrel",
]

PROBE = """
import json, sys
sys.argv = {argv!r}
code = 0
try:
    {body}
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
sys.stdout.flush()
sys.stderr.write("EXIT=" + str(code) + "\\n")
sys.stderr.write("MODULES=" + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def _probe(body: str, argv: list[str], root: Path) -> tuple[list[str], str]:
    """The heavy modules `body` imported, and its stdout; it must exit 0."""
    code = PROBE.format(argv=argv, body=body, heavy=HEAVY)
    env = {"INVOKEAI_ROOT": str(root), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    lines = dict(ln.split("=", 1) for ln in res.stderr.splitlines() if ln.startswith(("EXIT=", "MODULES=")))
    assert lines.get("EXIT") == "0", res.stderr
    return json.loads(lines["MODULES"]), res.stdout


def _heavy_loaded(body: str, argv: list[str], root: Path) -> list[str]:
    return _probe(body, argv, root)[0]


def _installed_plugins() -> set[str]:
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group="invokeai.plugins")}


def test_import_invokeai_core_imports_nothing_heavy(tmp_path: Path) -> None:
    assert _heavy_loaded("import invokeai_core", ["python"], tmp_path) == []


def test_import_invokeai_core_does_not_import_pydantic(tmp_path: Path) -> None:
    code = "import sys, invokeai_core; print('pydantic' in sys.modules, 'invokeai_core.graph' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "argv",
    [["invokeai", "--help"], ["invokeai", "nodes"], ["invokeai", "plugins"], ["invokeai", "nodes", "--json"]],
)
def test_cli_commands_import_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    """...and still do their work: every installed plugin loads, its commands and nodes are there."""
    modules, out = _probe("from invokeai_core.cli.main import main; main()", argv, tmp_path)
    assert modules == []
    plugins = _installed_plugins()
    assert {"nodes", "web", "diffusers"} <= plugins  # the plugins whose laziness this test is about
    if argv[1:] == ["--help"]:
        assert {"serve", "models", "run", "nodes", "plugins"} <= set(out.split())
    elif argv[1:] == ["plugins"]:
        rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
        assert set(rows) == plugins | {"core"}, out
        assert all(" loaded" in row for row in rows.values()), out
    else:
        types = set(json.loads(out)) if "--json" in argv else {line.split()[0] for line in out.splitlines()[1:]}
        assert {"iterate", "add", "blank_image", "txt2img", "denoise_latents"} <= types

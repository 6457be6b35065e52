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
]

PROBE = """
import json, sys
sys.argv = {argv!r}
try:
    {body}
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("MODULES=" + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def _heavy_loaded(body: str, argv: list[str], root: Path) -> list[str]:
    code = PROBE.format(argv=argv, body=body, heavy=HEAVY)
    env = {"INVOKEAI_ROOT": str(root), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    line = next((ln for ln in res.stderr.splitlines() if ln.startswith("MODULES=")), None)
    assert line is not None, res.stderr
    return json.loads(line[len("MODULES=") :])


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
    body = "from invokeai_core.cli.main import main; main()"
    assert _heavy_loaded(body, argv, tmp_path) == []

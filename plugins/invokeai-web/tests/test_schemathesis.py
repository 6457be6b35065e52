"""Schemathesis, every check, against a real `invokeai serve` on 127.0.0.1: generated requests for
every operation (valid and invalid, stateful sequences through the OpenAPI links), bounded.

Every check is on (`--checks all`): no 5xx, every status and response body declared by the OpenAPI,
valid requests accepted and invalid ones refused. `schemathesis.toml` next to this file lists the
refusals JSON Schema cannot express (graph rules, image content, model paths, unknown batch ids).
Two bounded runs: the *coverage* phase (boundary and invalid values of every parameter) on every
operation but the three whose body is a whole graph (a union of every node schema: some ten thousand
cases), and the *fuzzing* and *stateful* phases on every operation. Seeded, so CI runs are
reproducible. `INVOKEAI_WEB_SCHEMATHESIS_SEED` / `..._EXAMPLES` change the seed and the bound;
`INVOKEAI_WEB_SCHEMATHESIS_FULL=1` runs every phase on every operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import start_serve

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
CONFIG = str(Path(__file__).with_name("schemathesis.toml"))
GRAPH_BODIES = r"/sessions$|/nodes$|/enqueue_batch$"


def require_tool(path: str, install: str) -> None:
    """A missing tool fails under CI (never a silent skip) and skips elsewhere, saying what to install."""
    if Path(path).exists():
        return
    message = f"{Path(path).name} is not installed: run ./scripts/setup.sh (or pip install {install})"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _run(url: str, cwd: Path, *args: str) -> str:
    seed = os.environ.get("INVOKEAI_WEB_SCHEMATHESIS_SEED", "1")
    cmd = [
        SCHEMATHESIS,
        "--config-file",
        CONFIG,
        "run",
        url + "/openapi.json",
        "--checks",
        "all",
        "--seed",
        seed,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--generation-database",
        "none",
        "--no-color",
        "--warnings",
        "off",
        *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=280, cwd=cwd)
    tail = "\n".join(res.stdout.splitlines()[-80:])
    assert res.returncode == 0, f"{' '.join(args)}\n{tail}\n{res.stderr[-3000:]}"
    assert " passed" in res.stdout and "Tested: " in res.stdout
    return res.stdout


@pytest.mark.timeout(600)
def test_generated_requests_pass_every_check(tmp_path: Path) -> None:
    require_tool(SCHEMATHESIS, "schemathesis (pinned in requirements/dev.txt)")
    examples = os.environ.get("INVOKEAI_WEB_SCHEMATHESIS_EXAMPLES", "10")
    proc, url = start_serve(tmp_path / "root", log_file=tmp_path / "serve.log")
    try:
        assert url.startswith("http://127.0.0.1:")
        if os.environ.get("INVOKEAI_WEB_SCHEMATHESIS_FULL") == "1":
            _run(url, tmp_path, "--max-examples", examples)
            return
        _run(url, tmp_path, "--phases", "coverage", "--exclude-path-regex", GRAPH_BODIES)
        _run(url, tmp_path, "--phases", "fuzzing,stateful", "--max-examples", examples)
    finally:
        proc.terminate()
        proc.wait(30)

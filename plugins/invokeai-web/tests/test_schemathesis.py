"""Schemathesis against the live server's `/openapi.json`: generated requests for every operation
(valid and invalid), bounded, and no response may be a 5xx.

Two bounded runs keep it quick: the *coverage* phase (boundary and invalid values of every
parameter) on every operation but the three whose body is a whole graph (a union of every node
schema: some ten thousand cases), and the *fuzzing* and *stateful* phases on every operation.
Seeded, so CI runs are reproducible. `INVOKEAI_WEB_SCHEMATHESIS_SEED` / `..._EXAMPLES` change the
seed and the bound; `INVOKEAI_WEB_SCHEMATHESIS_FULL=1` runs every phase on every operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
GRAPH_BODIES = r"/sessions$|/nodes$|/enqueue_batch$"


def _run(url: str, cwd: Path, *args: str) -> None:
    seed = os.environ.get("INVOKEAI_WEB_SCHEMATHESIS_SEED", "1")
    cmd = [
        SCHEMATHESIS,
        "run",
        url + "/openapi.json",
        "--checks",
        "not_a_server_error",
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
    tail = "\n".join(res.stdout.splitlines()[-60:])
    assert res.returncode == 0, f"{' '.join(args)}\n{tail}\n{res.stderr[-3000:]}"
    assert " passed" in res.stdout and "Tested: " in res.stdout


@pytest.mark.timeout(600)
@pytest.mark.parametrize("invokeai_storage", ["sqlite"])
def test_no_generated_request_gets_a_server_error(server: Any, tmp_path: Path) -> None:
    if not Path(SCHEMATHESIS).exists():
        pytest.skip("schemathesis is not installed (pip install 'invokeai-web[test]')")
    examples = os.environ.get("INVOKEAI_WEB_SCHEMATHESIS_EXAMPLES", "10")
    if os.environ.get("INVOKEAI_WEB_SCHEMATHESIS_FULL") == "1":
        _run(server.url, tmp_path, "--max-examples", examples)
        return
    _run(server.url, tmp_path, "--phases", "coverage", "--exclude-path-regex", GRAPH_BODIES)
    _run(server.url, tmp_path, "--phases", "fuzzing,stateful", "--max-examples", examples)

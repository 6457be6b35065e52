"""CLI start-up: the median wall time of `invokeai --help` and of `invokeai run "add --a 1 --b 2"`.

Each command runs 10 times in a fresh process, with every plugin installed in this environment
(the table `invokeai plugins` prints is shown first), in a temporary root folder. The baseline is a
bare `python -c pass` of the same interpreter, measured in the same run; each median is also printed
as a ratio to it. Then each command runs once more under a probe that lists the heavy libraries it
imported (there should be none: torch, diffusers, transformers, fastapi, ...).

Targets (CLI issue): `--help` <= 0.4 s, `run "add --a 1 --b 2"` <= 0.8 s, no heavy import.

    .venv/bin/python bench/cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ["torch", "diffusers", "transformers", "fastapi", "starlette", "uvicorn", "socketio", "boto3", "numpy"]
COMMANDS: dict[str, list[str]] = {
    "invokeai --help": ["--help"],
    'invokeai run "add --a 1 --b 2"': ["run", "add --a 1 --b 2"],
}
TARGETS = {"invokeai --help": 0.4, 'invokeai run "add --a 1 --b 2"': 0.8}

PROBE = """
import json, sys
sys.argv = ["invokeai", *{args!r}]
from invokeai_core.cli.main import main
try:
    main()
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("HEAVY=" + json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)) + "\\n")
"""


def median_wall(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def heavy_imports(args: list[str], env: dict[str, str]) -> list[str]:
    code = PROBE.format(args=args, heavy=HEAVY)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    line = next((ln for ln in res.stderr.splitlines() if ln.startswith("HEAVY=")), None)
    if line is None:
        raise RuntimeError(f"the probe failed: {res.stderr[-2000:]}")
    found: list[str] = json.loads(line[len("HEAVY=") :])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    ns = parser.parse_args()
    exe = str(Path(sys.executable).parent / "invokeai")
    with tempfile.TemporaryDirectory() as root:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
        env["INVOKEAI_ROOT"] = root
        plugins = json.loads(subprocess.run([exe, "plugins", "--json"], capture_output=True, env=env).stdout)
        print("plugins:", ", ".join(f"{p['name']} ({p['status']})" for p in plugins))
        for args in COMMANDS.values():  # warm the file cache and byte-code once
            subprocess.run([exe, *args], capture_output=True, env=env)
        baseline = median_wall([sys.executable, "-c", "pass"], env, ns.runs)
        print(f"baseline `python -c pass`: {baseline:.3f} s (median of {ns.runs})")
        ok = True
        for label, args in COMMANDS.items():
            t = median_wall([exe, *args], env, ns.runs)
            heavy = heavy_imports(args, env)
            target = TARGETS[label]
            verdict = "ok" if t <= target and not heavy else "OVER"
            ok = ok and verdict == "ok"
            print(
                f"{label}: {t:.3f} s median of {ns.runs} ({t / baseline:.1f}x baseline; target <= {target} s) "
                f"heavy imports: {', '.join(heavy) or 'none'}  [{verdict}]"
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

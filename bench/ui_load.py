"""How long the web UI takes to load in real Chromium (Playwright, Debian's /usr/bin/chromium) from a
real `invokeai serve` on a fresh root: the first visit (nothing cached) and reloads (the hashed assets
come from the browser's cache), `--repeat` times each; prints the median and worst `loadEventEnd`
(ms) and the time until the UI is usable (its Generate tab shown). Not a test: the browser test
checks what the UI does, this prints how fast (it used to be an assertion in test_ui_browser.py).

    .venv/bin/python bench/ui_load.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("INVOKEAI_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
        env.update(INVOKEAI_ROOT=tmp, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
        invokeai = str(Path(sys.executable).parent / "invokeai")
        proc = subprocess.Popen([invokeai, "serve", "--port", "0"], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "serving on" not in line:
            proc.kill()
            sys.exit(f"the server did not start: {line!r}")
        url = line.split("serving on ", 1)[1].split()[0]
        figures: dict[str, list[tuple[float, float]]] = {"first visit": [], "reload": []}
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
                for _ in range(args.repeat):
                    context = browser.new_context()  # a fresh cache
                    page = context.new_page()
                    for kind in ("first visit", "reload"):
                        start = time.perf_counter()
                        if kind == "first visit":
                            page.goto(url + "/")
                        else:
                            page.reload()
                        page.get_by_role("tab", name="Generate").wait_for()
                        usable = (time.perf_counter() - start) * 1000
                        load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                        figures[kind].append((float(load), usable))
                    context.close()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(15)
    for kind, rows in figures.items():
        loads, usable = [r[0] for r in rows], [r[1] for r in rows]
        print(
            f"{kind:12s} loadEventEnd median {statistics.median(loads):7.1f} ms (worst {max(loads):7.1f}); "
            f"usable median {statistics.median(usable):7.1f} ms (worst {max(usable):7.1f})"
        )


if __name__ == "__main__":
    main()

"""One request must not take the server down: the attacks of issue 23 against a real `invokeai serve`.

Starts `invokeai serve` in a subprocess on a free 127.0.0.1 port (a fresh root, the default `[limits]`
except `regex_seconds`, see `--regex-seconds`), then runs each attack in turn while

* a sampler reads the server's resident memory (`VmRSS` of `/proc/PID/status`) every 10 ms, and
* a second client asks `GET /api/v1/app/version` back to back on its own thread,

and prints, per attack, what the server answered, its peak RSS above the idle RSS measured before the
first attack (target: under 1 GiB), and the slowest answer the second client got meanwhile (target:
under 1 s). A last part starts a server with an access token and counts how many wrong guesses it
answers a second (before the fix: about 1,900). Linux only (reads /proc). Not a test.

    .venv/bin/python bench/limits.py [--regex-seconds 1]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

INVOKEAI = str(Path(sys.executable).parent / "invokeai")
TOKEN = "bench-token-0123456789abcdef"


@contextlib.contextmanager
def serve(root: Path, *args: str, **env: str) -> Iterator[tuple[str, int]]:
    """`invokeai serve --port 0`; yields (url, pid)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    full.update({"INVOKEAI_ROOT": str(root), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env})
    log_path = root / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([INVOKEAI, "serve", "--port", "0", *args], stdout=log, stderr=log, env=full)
        try:
            deadline = time.monotonic() + 60
            while "serving on " not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("invokeai serve did not start:\n" + log_path.read_text())
                time.sleep(0.05)
            yield log_path.read_text().split("serving on ", 1)[1].split()[0], proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Watch:
    """The RSS sampler and the second client, both reset at the start of each attack."""

    def __init__(self, url: str, pid: int) -> None:
        import httpx

        self.pid = pid
        self.peak = 0
        self.worst = 0.0
        self._stop = threading.Event()
        self._client = httpx.Client(timeout=600)
        self._version = url + "/api/v1/app/version"
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._sample, self._ask)]

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.01)

    def _ask(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self._client.get(self._version)
            self.worst = max(self.worst, time.monotonic() - t0)
            time.sleep(0.02)

    def start(self) -> Watch:
        for t in self._threads:
            t.start()
        return self

    def reset(self) -> None:
        time.sleep(0.1)  # let an answer in flight finish
        self.peak = rss_bytes(self.pid)
        self.worst = 0.0

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(600)
        self._client.close()


def one(node: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {node["id"]: node}, "edges": []}


def attacks(api: Any) -> list[tuple[str, Callable[[], str]]]:
    """(name, run): each run returns a short description of the server's answer."""

    def create(graph: dict[str, Any]) -> str:
        r = api.post("/sessions", json=graph)
        if r.status_code != 201:
            detail = r.json()["detail"]
            where = f" ({detail[0]['node_id']}.{detail[0]['field']})" if isinstance(detail, list) else ""
            return f"{r.status_code}{where}"
        return run(r.json()["id"])

    def run(sid: str) -> str:
        api.put(f"/sessions/{sid}/invoke")
        while (s := api.get(f"/sessions/{sid}").json())["status"] in ("pending", "running"):
            time.sleep(0.05)
        errors = [e["type"] for e in s["errors"].values()]
        return s["status"] + (f" ({errors[0]})" if errors else "")

    def regex(string: str, pattern: str) -> Callable[[], str]:
        node = {"id": "s", "type": "string_replace", "string": string, "search_string": pattern, "use_regex": True}
        return lambda: create(one(node))

    def cache_flood() -> str:
        answers = set()
        for i in range(40):  # 40 distinct results of 1 M characters each: the cache keeps cache_max_mb of them
            node = {"id": "s", "type": "string_replace", "string": f"{i:07d}" + "a" * 999_993, "search_string": "z"}
            answers.add(create(one(node)))
        return ", ".join(sorted(answers)) + " x40"

    def big_session_reads() -> str:
        nodes = {
            f"r{i}": {"id": f"r{i}", "type": "string_replace", "string": "ab" * 250_000, "search_string": "b"}
            for i in range(12)
        }
        sid = api.post("/sessions", json={"nodes": nodes, "edges": []}).json()["id"]
        status = run(sid)
        size = max(len(api.get(f"/sessions/{sid}").content) for _ in range(20))
        return f"{status}, 20 reads of {size / 2**20:.1f} MiB"

    def priorities() -> str:
        graph = one({"id": "n", "type": "string", "value": "x"})
        api.put("/queue/default/processor/pause")
        codes = [api.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph, "priority": 2**63}})]
        codes.append(api.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph, "priority": 2**31 - 1}}))
        codes += [api.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph}, "prepend": True})] * 2
        api.put("/queue/default/clear")
        api.put("/queue/default/processor/resume")
        return " ".join(str(r.status_code) for r in codes)

    exp = {"id": "m", "type": "integer_math", "operation": "exp", "a": 2}
    # the 600 KB request that built a 1 GB string: every "a" becomes 1,700 "b"s
    amplify = {"id": "s", "type": "string_replace", "string": "a" * 600_000, "search_string": "a"}
    amplify["replace_string"] = "b" * 1700
    return [
        ("range_of_size size=363890635", lambda: create(one({"id": "r", "type": "range_of_size", "size": 363890635}))),
        ("range stop=10**12", lambda: create(one({"id": "r", "type": "range", "stop": 10**12}))),
        ("random_range size=10**9", lambda: create(one({"id": "r", "type": "random_range", "size": 10**9}))),
        ("string_replace 600 KB -> 1 GB", lambda: create(one(amplify))),
        (
            "blank_image 16384x16384",
            lambda: create(one({"id": "b", "type": "blank_image", "width": 16384, "height": 16384})),
        ),
        ("integer_math exp b=4,000,000", lambda: create(one({**exp, "b": 4_000_000}))),
        ("integer_math exp b=20,000,000", lambda: create(one({**exp, "b": 20_000_000}))),
        ("integer_math exp b=4095 (allowed)", lambda: create(one({**exp, "b": 4095}))),
        ("regex (a+)+$ on 28 characters", regex("a" * 28 + "!", "(a+)+$")),
        ("regex (a|aa)+$ on 40 characters", regex("a" * 40 + "!", "(a|aa)+$")),
        (
            "string_split of 40 MiB",
            lambda: create(one({"id": "s", "type": "string_split", "string": "a," * 20 * 2**20})),
        ),
        ("output cache: 40 results of 1 MB", cache_flood),
        ("GET a 12-result session 20 times", big_session_reads),
        ("priority 2**63, prepend at the top", priorities),
    ]


def guesses_per_second(seconds: float = 3.0) -> tuple[int, int]:
    """(answered, throttled) wrong-token requests a second, from 16 concurrent guessers."""
    import httpx

    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(Path(tmp), "--no-queue-processor", INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN=TOKEN) as (url, _),
    ):
        counts = {"answered": 0, "throttled": 0}
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def guess(worker: int) -> None:
            with httpx.Client(timeout=30) as http:
                i = 0
                while time.monotonic() < deadline:
                    i += 1
                    r = http.get(url + "/api/v1/app/version", headers={"Authorization": f"Bearer g{worker}-{i}"})
                    with lock:
                        counts["answered" if r.status_code == 401 else "throttled"] += 1

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(guess, range(16)))
        return round(counts["answered"] / seconds), round(counts["throttled"] / seconds)


def main() -> None:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regex-seconds", type=float, default=1.0, help="limits.regex_seconds of the server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"INVOKEAI_LIMITS__REGEX_SECONDS": str(args.regex_seconds)}
        with serve(Path(tmp), **env) as (url, pid), httpx.Client(base_url=url + "/api/v1", timeout=600) as api:
            api.get("/app/version")
            time.sleep(1)
            idle = rss_bytes(pid)
            print(f"invokeai serve: idle RSS {idle / 2**20:.0f} MiB; targets: peak RSS < idle + 1024 MiB, delay < 1 s")
            print(f"{'attack':<38} {'answer':<36} {'RSS above idle':>15} {'worst delay':>12}")
            watch = Watch(url, pid).start()
            worst_rss, worst_delay = 0, 0.0
            try:
                for name, attack in attacks(api):
                    watch.reset()
                    answer = attack()
                    time.sleep(0.1)
                    above = max(0, watch.peak - idle)
                    worst_rss, worst_delay = max(worst_rss, above), max(worst_delay, watch.worst)
                    print(f"{name:<38} {answer[:36]:<36} {above / 2**20:>11.0f} MiB {watch.worst * 1000:>9.0f} ms")
            finally:
                watch.stop()
            print(f"{'worst':<38} {'':<36} {worst_rss / 2**20:>11.0f} MiB {worst_delay * 1000:>9.0f} ms")
    answered, throttled = guesses_per_second()
    print(f"wrong access tokens: {answered} answered/s, {throttled} refused with 429/s (16 concurrent guessers)")


if __name__ == "__main__":
    main()

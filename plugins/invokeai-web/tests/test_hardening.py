"""One request must not take the server down: attacks against a real `invokeai serve` (a subprocess
on a free 127.0.0.1 port), each while a second client keeps asking the server for its version.

The second client runs in this (other) process, so it measures the server's event loop, not ours.
The issue's target is an answer within 1 s; the tests allow `MAX_DELAY` (1.5 s) so that a loaded CI
machine does not fail them, which still catches the 6 s to 12 min freezes they guard against.
`bench/limits.py` prints the figures (peak RSS, worst delay) for the same attacks.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")

INVOKEAI = str(Path(sys.executable).parent / "invokeai")
MAX_DELAY = 1.5  # seconds; see the module docstring
pytestmark = pytest.mark.timeout(300)


@contextmanager
def serve(root: Path, *args: str, **env: str) -> Iterator[str]:
    """`invokeai serve --port 0` with a fresh root; yields its URL; SIGTERM on exit."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    full.update({"INVOKEAI_ROOT": str(root), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **env})
    log_path = root / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([INVOKEAI, "serve", "--port", "0", *args], stdout=log, stderr=log, env=full)
        try:
            deadline = time.monotonic() + 60
            while "serving on " not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("invokeai serve did not start:\n" + log_path.read_text())
                time.sleep(0.05)
            yield log_path.read_text().split("serving on ", 1)[1].split()[0]
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


class SecondClient:
    """Asks `GET /app/version` back to back on its own thread; `worst` is the slowest answer."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url + "/api/v1/app/version"
        self.headers = headers or {}
        self.worst = 0.0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=60, headers=self.headers) as http:
            while not self._stop.is_set():
                t0 = time.monotonic()
                assert http.get(self.url).status_code == 200
                self.worst = max(self.worst, time.monotonic() - t0)
                self.answers += 1
                time.sleep(0.02)

    def __enter__(self) -> SecondClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(60)
        assert self.answers > 0


def wait_for(predicate: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def one(node: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {node["id"]: node}, "edges": []}


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("hardening")
    images = root / "outputs" / "images"
    images.mkdir(parents=True)
    stale = images / ".crashed.png.0badf00d.tmp"  # a save that a crash interrupted an hour ago
    stale.write_bytes(b"half a png")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    env = {
        "INVOKEAI_LIMITS__REGEX_SECONDS": "3",
        "INVOKEAI_LIMITS__OUTPUT_MB": "0.5",
        "INVOKEAI_LIMITS__GRAPH_NODES": "2000",
    }
    with serve(root, **env) as u:
        wait_for(lambda: not stale.exists(), 30)  # removed by the queue processor's start-up recovery
        yield u


@pytest.fixture
def api(url: str) -> Iterator[Any]:
    with httpx.Client(base_url=url + "/api/v1", timeout=60) as http:
        yield http


def refused(api: Any, graph: dict[str, Any], node_id: str, field: str, text: str) -> None:
    r = api.post("/sessions", json=graph)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert (detail["node_id"], detail["field"]) == (node_id, field) and text in detail["msg"], detail


def run_session(api: Any, graph: dict[str, Any]) -> dict[str, Any]:
    sid = api.post("/sessions", json=graph).json()["id"]
    assert api.put(f"/sessions/{sid}/invoke").status_code == 202
    return wait_for(lambda: (s := api.get(f"/sessions/{sid}").json())["status"] not in ("pending", "running") and s)


def test_memory_attacks_are_refused_before_the_work(url: str, api: Any) -> None:
    with SecondClient(url) as second:
        refused(api, one({"id": "r", "type": "range_of_size", "size": 363890635}), "r", "size", "collection_items")
        refused(api, one({"id": "r", "type": "range", "stop": 10**12}), "r", "stop", "collection_items")
        refused(api, one({"id": "r", "type": "random_range", "size": 10**9}), "r", "size", "collection_items")
        big = {"id": "b", "type": "blank_image", "width": 16384, "height": 16384}
        refused(api, one(big), "b", "height", "limits.image_pixels (40000000)")
        # the 600 KB request that built a 1 GB string: each match may grow it only up to the limit
        amplify = {"id": "s", "type": "string_replace", "string": "a" * 300_000, "search_string": "a"}
        session = run_session(api, one({**amplify, "replace_string": "b" * 3000}))
        assert session["status"] == "failed"
        assert "limits.string_length (1000000)" in session["errors"]["s"]["message"]
    assert second.worst < MAX_DELAY, second.worst


def test_a_huge_exponent_is_refused_and_the_largest_allowed_one_answers_at_once(url: str, api: Any) -> None:
    with SecondClient(url) as second:
        for b in (4_000_000, 20_000_000):
            refused(api, one({"id": "m", "type": "integer_math", "operation": "exp", "a": 2, "b": b}), "m", "b", "bits")
        session = run_session(api, one({"id": "m", "type": "integer_math", "operation": "exp", "a": 2, "b": 4095}))
        assert session["results"]["m"]["value"] == 2**4095
        for _ in range(20):
            assert api.get(f"/sessions/{session['id']}").status_code == 200
    assert second.worst < MAX_DELAY, second.worst


def test_a_catastrophic_regex_runs_off_the_event_loop_until_regex_seconds(url: str, api: Any) -> None:
    node = {"id": "s", "type": "string_replace", "string": "a" * 40 + "!", "search_string": "(a|aa)+$"}
    with SecondClient(url) as second:
        t0 = time.monotonic()
        session = run_session(api, one({**node, "use_regex": True}))
        took = time.monotonic() - t0
    assert session["status"] == "failed" and "limits.regex_seconds (3 s)" in session["errors"]["s"]["message"]
    assert took >= 2.5  # it really ran for about regex_seconds meanwhile
    assert second.worst < MAX_DELAY, second.worst


def test_cancel_stops_a_session_stuck_in_a_regex(url: str, api: Any) -> None:
    node = {"id": "s", "type": "string_replace", "string": "a" * 40 + "!", "search_string": "(a|aa)+$"}
    graph = {
        "nodes": {"s": {**node, "use_regex": True}, "after": {"id": "after", "type": "string", "value": "x"}},
        "edges": [edge("s", "value", "after", "value")],
    }
    with SecondClient(url) as second:
        sid = api.post("/sessions", json=graph).json()["id"]
        api.put(f"/sessions/{sid}/invoke")
        time.sleep(0.5)
        assert api.delete(f"/sessions/{sid}/invoke").status_code == 202
        session = wait_for(lambda: (s := api.get(f"/sessions/{sid}").json())["canceled"] and s, 10)
    assert session["status"] == "canceled" and "after" not in session["results"] and not session["errors"]
    assert second.worst < MAX_DELAY, second.worst


def test_splitting_a_40_mib_string_is_refused_without_stalling(url: str, api: Any) -> None:
    with SecondClient(url) as second:
        graph = one({"id": "s", "type": "string_split", "string": "a," * (20 * 2**20)})
        refused(api, graph, "s", "string", "limits.string_length")
    assert second.worst < MAX_DELAY, second.worst


def test_large_sessions_are_encoded_off_the_event_loop(url: str, api: Any) -> None:
    """Twelve results of about 0.4 MiB each (a 5 MiB session): reading it again and again must not stall others."""
    nodes = {
        f"r{i}": {"id": f"r{i}", "type": "string_replace", "string": "ab" * 200_000, "search_string": "b"}
        for i in range(12)
    }
    session = run_session(api, {"nodes": nodes, "edges": []})
    assert session["status"] == "completed"
    with SecondClient(url) as second:
        for _ in range(15):
            assert len(api.get(f"/sessions/{session['id']}").content) > 4_000_000
    assert second.worst < MAX_DELAY, second.worst


def test_an_output_too_large_to_store_fails_the_node_and_leaves_session_and_item_consistent(api: Any) -> None:
    node = {"id": "s", "type": "string_replace", "string": "a" * 900_000, "search_string": "z"}
    r = api.post("/queue/default/enqueue_batch", json={"batch": {"graph": one(node)}})
    assert r.status_code == 201, r.text
    item_id = r.json()["item_ids"][0]
    item = wait_for(lambda: (i := api.get(f"/queue/default/i/{item_id}").json())["status"] == "failed" and i)
    assert item["error_type"] == "OutputTooLargeError" and "limits.output_mb (0.5 MiB)" in item["error_message"]
    session = api.get(f"/sessions/{item['session_id']}").json()
    assert session["status"] == "failed" and session["errors"]["s"]["type"] == "OutputTooLargeError"
    assert not session["results"]
    for i in range(3):  # appends keep working (they used to be 500s from then on)
        r = api.post(f"/sessions/{item['session_id']}/nodes", json={"id": f"more{i}", "type": "string"})
        assert r.status_code == 201, r.text


def test_priorities_outside_int32_are_422_and_prepends_at_the_top_never_overflow(api: Any) -> None:
    graph = one({"id": "n", "type": "string", "value": "x"})
    assert api.put("/queue/default/processor/pause").status_code == 200
    try:
        for priority in (2**63, 2**64, -(2**63) - 1, 2**31):
            r = api.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph, "priority": priority}})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "priority", r.text
        r = api.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph, "priority": 2**31 - 1}})
        assert r.status_code == 201
        for expected in (2**31, 2**31 + 1):
            r = api.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph}, "prepend": True})
            assert r.status_code == 201 and r.json()["priority"] == expected
    finally:
        api.put("/queue/default/clear")
        api.put("/queue/default/processor/resume")


TOKEN = "a-long-enough-test-token-0123"


def test_wrong_tokens_are_throttled_and_logout_revokes_the_cookie(tmp_path: Path) -> None:
    env = {"INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN": TOKEN, "INVOKEAI_PLUGINS__WEB__AUTH_FAILURES_PER_MINUTE": "5"}
    with serve(tmp_path, "--no-queue-processor", **env) as url:
        version = url + "/api/v1/app/version"
        with httpx.Client(base_url=url) as browser:  # sign in first, to try the cookie later
            assert browser.post("/api/v1/auth/login", json={"token": TOKEN}).status_code == 204
            cookie = {"Cookie": f"invokeai_session={browser.cookies['invokeai_session']}"}
            assert httpx.get(version, headers=cookie).status_code == 200
            assert browser.post("/api/v1/auth/logout").status_code == 204
        assert httpx.get(version, headers=cookie).status_code == 401  # someone kept a copy of the cookie
        with httpx.Client(base_url=url) as browser:  # a browser that stays signed in through the attack
            assert browser.post("/api/v1/auth/login", json={"token": TOKEN}).status_code == 204
            signed_in = {"Cookie": f"invokeai_session={browser.cookies['invokeai_session']}"}
        for i in range(4):  # the sign-in above was right: 5 wrong tokens are left for this minute
            assert httpx.get(version, headers={"Authorization": f"Bearer guess-{i}"}).status_code == 401
        assert httpx.post(url + "/api/v1/auth/login", json={"token": "guess-4"}).status_code == 401
        r = httpx.get(version, headers={"Authorization": "Bearer guess-5"})
        assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 60
        # past the limit even the right token is not checked (else guessing would go on), nor the sign-in form
        assert httpx.get(version, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 429
        assert httpx.post(url + "/api/v1/auth/login", json={"token": TOKEN}).status_code == 429
        assert httpx.get(version).status_code == 401  # no credentials: not a guess, the usual answer
        assert httpx.get(version, headers=signed_in).status_code == 200  # a signed-in browser is not locked out
        assert httpx.get(version, headers={"Cookie": "invokeai_session=forged"}).status_code == 401
    with serve(tmp_path, "--no-queue-processor", **env) as url:  # a restart keeps the sign-out
        assert httpx.get(url + "/api/v1/app/version", headers=cookie).status_code == 401
        assert httpx.get(url + "/api/v1/app/version", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_a_short_token_is_refused_off_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(tmp_path), INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN="x")
    res = subprocess.run(
        [INVOKEAI, "serve", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, env=env, timeout=60
    )
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "access_token has 1 characters" in res.stderr and "at least 16" in res.stderr


#: What a page elsewhere runs against the local server: a session and an image upload, as "simple"
#: requests (no preflight), so the browser sends them whatever the server's CORS answer would be.
ATTACK = """
const PNG = Uint8Array.from(atob(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
), c => c.charCodeAt(0));
async function attack(api) {
  const form = new FormData();
  form.append("file", new Blob([PNG], {type: "image/png"}), "x.png");
  const opts = {method: "POST", mode: "no-cors"};
  for (const [path, body] of [["/sessions", undefined], ["/images/upload", form]]) {
    try { await fetch(api + path, {...opts, body}); } catch (e) {}
  }
  return "done";
}
"""


def test_opaque_and_foreign_origins_cannot_change_a_token_less_server_from_chromium(tmp_path: Path) -> None:
    """Real cross-origin requests from Chromium: a page on another origin, and a sandboxed iframe in it
    (whose requests say `Origin: null`), post a session and an image upload to a local server without
    a token. Both are refused with 403 and change nothing; the same requests from the server's own
    origin go through (so the browser did send them)."""
    import html
    import http.server
    import socketserver

    sync_api = pytest.importorskip("playwright.sync_api", reason="the Python playwright package is not installed")
    chromium = os.environ.get("INVOKEAI_TEST_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.skip(f"{chromium} is missing (apt-get install -y chromium)")
    script = f"<script>{ATTACK}</script>"
    page_html = f'{script}<iframe sandbox="allow-scripts" srcdoc="{html.escape(script)}"></iframe>'.encode()

    class Elsewhere(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *args: Any) -> None:
            pass

    seen: list[tuple[str, str, int]] = []  # (who sent it, path, status) of each POST to the API
    with serve(tmp_path, "--no-queue-processor") as url, socketserver.TCPServer(("127.0.0.1", 0), Elsewhere) as other:
        threading.Thread(target=other.serve_forever, daemon=True).start()
        foreign = f"http://localhost:{other.server_address[1]}"
        api = url + "/api/v1"
        with sync_api.sync_playwright() as p:
            flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
            browser = p.chromium.launch(executable_path=chromium, args=flags)
            try:
                page = browser.new_page()
                responses: list[Any] = []
                page.on("response", lambda r: responses.append(r) if r.request.method == "POST" else None)

                def attack_from(target: Any, who: str) -> None:
                    responses.clear()
                    assert target.evaluate("api => attack(api)", api) == "done"
                    for _ in range(200):  # let Playwright deliver the response events
                        if len(responses) == 2:
                            break
                        page.wait_for_timeout(50)
                    seen.extend((who, r.url[len(api) :], r.status) for r in responses)

                page.goto(foreign + "/")
                attack_from(page, "foreign")  # the foreign page itself
                frame = next(f for f in page.frames if f != page.main_frame)
                frame.wait_for_function("typeof attack === 'function'")
                attack_from(frame, "sandboxed")  # its sandboxed iframe: Origin null
                page.goto(url + "/api/v1/app/version")  # the control: the server's own origin
                page.add_script_tag(content=ATTACK)
                attack_from(page, "own")
            finally:
                browser.close()
        other.shutdown()
        # (Playwright shows neither the Origin header nor the body of these opaque requests; a sandboxed
        # frame without allow-same-origin has an opaque origin, which Chromium sends as `Origin: null`.)
        assert sorted(seen) == [
            ("foreign", "/images/upload", 403),
            ("foreign", "/sessions", 403),
            ("own", "/images/upload", 201),
            ("own", "/sessions", 201),
            ("sandboxed", "/images/upload", 403),
            ("sandboxed", "/sessions", 403),
        ], seen
        assert httpx.get(api + "/sessions").json()["total"] == 1  # only the server's own page changed anything
        assert httpx.get(api + "/images").json()["total"] == 1


def test_bad_inputs_are_4xx_naming_what_and_nothing_is_written(api: Any) -> None:
    """Malformed and deeply nested JSON, graphs over limits.graph_nodes, NUL bytes and huge ids, and
    names that try to leave their folder in every name-taking route: each a 4xx that says what was
    wrong, and no session, queue item or image is created. (Images' own names: test_images.py.)"""
    sessions_before = api.get("/sessions").json()["total"]
    queue_before = api.get("/queue/default/status").json()["queue"]["total"]

    def detail(r: Any) -> str:
        return str(r.json()["detail"])

    r = api.post("/sessions", content=b'{"nodes": {', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "JSON decode error" in detail(r)
    deep = b'{"nodes": {"a": ' + b'{"x": ' * 100_000 + b"1" + b"}" * 100_000 + b'}, "edges": []}'
    r = api.post("/sessions", content=deep, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "nested too deeply" in detail(r)
    many = {"nodes": {str(i): {"id": str(i), "type": "integer"} for i in range(2001)}, "edges": []}
    for path, body in (("/sessions", many), ("/queue/default/enqueue_batch", {"batch": {"graph": many}})):
        r = api.post(path, json=body)
        assert r.status_code == 422 and "limits.graph_nodes (2000)" in detail(r), (path, r.text)
    for nid in ("a\x00b", "x" * 100_000):
        r = api.post("/sessions", json={"nodes": {nid: {"id": nid, "type": "integer"}}, "edges": []})
        assert r.status_code == 422 and r.json()["detail"][0]["field"] == "id", r.text[:300]
        assert len(r.content) < 2000  # the answer never echoes a huge input
    nul = {"nodes": {"s": {"id": "s", "type": "string", "value": "a\x00b"}}, "edges": []}
    assert api.post("/sessions", json=nul).status_code == 201  # NUL inside a value is just data
    sessions_before += 1
    for path in (
        "/sessions/..%2F..%2Finvokeai.db",
        "/sessions/%00",
        "/sessions/" + "s" * 5000,
        "/queue/..%2F..%2Fx/status",
        "/queue/%00/status",
        "/queue/" + "q" * 5000 + "/list",
        "/queue/default/i/..%2F1",
        "/nodes/..%2F..%2Fetc%2Fpasswd",
        "/nodes/%00",
        "/models/..%2F..%2Fdemo-sd",
        "/models/%00",
    ):
        r = api.get(path)
        assert r.status_code in (400, 404, 422), (path, r.status_code)
        assert "root:" not in r.text and len(r.content) < 12_000, path
    assert api.get("/sessions").json()["total"] == sessions_before
    assert api.get("/queue/default/status").json()["queue"]["total"] == queue_before

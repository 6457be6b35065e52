"""Webhooks through the real server: a real http.server on 127.0.0.1 receives the signed notices."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from invokeai_web.webhooks import SIGNATURE_HEADER, verify

pytestmark = pytest.mark.anyio

SECRET = "test-webhook-secret"


@pytest.fixture
def web_settings_overrides() -> dict[str, Any]:
    return {"webhook_secret": SECRET, "webhook_backoff_seconds": 0.05, "webhook_attempts": 3}


class Receiver:
    """Answers each POST with the next status of `statuses` (then 200); `hold` blocks answers."""

    def __init__(self) -> None:
        self.statuses: list[int | str] = []
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.hold.wait(30)
                with receiver.changed:
                    receiver.received.append((dict(self.headers), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.changed.notify_all()
                if status == "drop":  # no answer at all: the connection closes
                    self.close_connection = True
                    return
                self.send_response(int(status))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook?src=test"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait_for(self, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.received) >= n, timeout), self.received
            return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.hold.set()
    r.httpd.shutdown()


def gray_batch(values: list[int]) -> dict[str, Any]:
    return {
        "graph": {"nodes": {"img": {"id": "img", "type": "wt_gray", "size": 8}}, "edges": []},
        "data": [[{"node_path": "img", "field_name": "value", "items": values}]],
    }


async def deliveries(http: Any, item_id: int, n: int, queue_id: str = "default") -> list[dict[str, Any]]:
    for _ in range(400):
        rows = (await http.get(f"/queue/{queue_id}/i/{item_id}/webhooks")).json()
        if len(rows) >= n:
            return list(rows)
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {n} deliveries recorded: {rows}")


async def test_a_completed_item_is_posted_signed_after_retries(server: Any, receiver: Receiver) -> None:
    receiver.statuses = [500, "drop", 200]
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": gray_batch([200]), "webhook": receiver.url})
        assert r.status_code == 201, r.text
        (item_id,) = r.json()["item_ids"]
        notices = receiver.wait_for(3)
        rows = await deliveries(http, item_id, 3)
        for headers, body in receiver.received:
            assert verify(SECRET, headers[SIGNATURE_HEADER], body)
            assert not verify("another secret", headers[SIGNATURE_HEADER], body)
            assert not verify(SECRET, headers[SIGNATURE_HEADER], body + b" ")  # tampered
            t = int(headers[SIGNATURE_HEADER].split(",")[0].removeprefix("t="))
            assert not verify(SECRET, headers[SIGNATURE_HEADER], body, now=t + 301)  # too old: a replay
        assert [n["attempt"] for n in notices] == [1, 2, 3]
        notice = notices[-1]
        assert notice["event"] == "queue_item.completed"
        assert notice["item"]["item_id"] == item_id and notice["item"]["status"] == "completed"
        assert "graph" not in notice["item"]
        (image,) = notice["images"]
        got = await http.get(image["url"].removeprefix("/api/v1"))
        assert got.status_code == 200 and got.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert [(d["attempt"], d["status_code"], d["delivered"]) for d in rows] == [
            (1, 500, False),
            (2, None, False),
            (3, 200, True),
        ]
        assert rows[0]["error"] == "the target answered 500" and rows[1]["error"]
        assert all(d["url"] == receiver.url and d["event"] == "queue_item.completed" for d in rows)


async def test_it_gives_up_after_the_configured_attempts(server: Any, receiver: Receiver) -> None:
    receiver.statuses = [503] * 10
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": gray_batch([1]), "webhook": receiver.url})
        (item_id,) = r.json()["item_ids"]
        rows = await deliveries(http, item_id, 3)
        # a later item's notice goes out after the given-up one: the thread moved on
        r = await http.post("/queue/default/enqueue_batch", json={"batch": gray_batch([2]), "webhook": receiver.url})
        await deliveries(http, r.json()["item_ids"][0], 3)
        rows = (await http.get(f"/queue/default/i/{item_id}/webhooks")).json()
        assert [(d["attempt"], d["delivered"]) for d in rows] == [(1, False), (2, False), (3, False)]


async def test_canceled_items_are_posted_and_items_without_webhook_are_not(server: Any, receiver: Receiver) -> None:
    async with server.async_client() as http:
        await http.put("/queue/c/processor/pause")
        plain = (await http.post("/queue/c/enqueue_batch", json={"batch": gray_batch([1])})).json()["item_ids"]
        hooked = await http.post("/queue/c/enqueue_batch", json={"batch": gray_batch([2]), "webhook": receiver.url})
        (item_id,) = hooked.json()["item_ids"]
        await http.put(f"/queue/c/i/{plain[0]}/cancel")
        await http.put(f"/queue/c/i/{item_id}/cancel")
        (notice,) = receiver.wait_for(1)
        assert notice["event"] == "queue_item.canceled" and notice["item"]["item_id"] == item_id
        assert notice["images"] == []
        assert (await http.get(f"/queue/c/i/{plain[0]}/webhooks")).json() == []
        assert (await http.get("/queue/c/i/999999/webhooks")).status_code == 404


async def test_a_hanging_target_never_holds_up_the_queue(server: Any, receiver: Receiver) -> None:
    receiver.hold.clear()  # the target takes the first notice and does not answer
    async with server.async_client() as http:
        r = await http.post(
            "/queue/default/enqueue_batch", json={"batch": gray_batch([1, 2, 3]), "webhook": receiver.url}
        )
        ids = r.json()["item_ids"]
        for _ in range(400):  # every item finishes while the first notice is still unanswered
            if (await http.get("/queue/default/status")).json()["queue"]["completed"] == 3:
                break
            await asyncio.sleep(0.05)
        assert (await http.get("/queue/default/status")).json()["queue"]["completed"] == 3
        assert not receiver.received
        receiver.hold.set()
        notices = receiver.wait_for(3)
        assert sorted(n["item"]["item_id"] for n in notices) == ids


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ftp://127.0.0.1/x", "only http and https"),
        ("http://user:pw@127.0.0.1/x", "credentials in the URL"),
        ("http:///x", "has no host"),
        ("http://127.0.0.1:notaport/x", "not a valid URL"),
    ],
)
async def test_bad_targets_are_422(server: Any, url: str, needle: str) -> None:
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": gray_batch([1]), "webhook": url})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "webhook"]
        assert needle in r.json()["detail"][0]["msg"]
        assert (await http.get("/queue/default/status")).json()["queue"]["total"] == 0


@pytest.mark.parametrize(
    "web_settings_overrides",
    [{"webhook_secret": SECRET, "webhook_allowed_hosts": ["hooks.example.com", "*.example.org"]}],
)
async def test_allowed_hosts_restrict_targets(server: Any, receiver: Receiver) -> None:
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": gray_batch([1]), "webhook": receiver.url})
        assert r.status_code == 422 and "host '127.0.0.1' is not allowed" in r.text
        await http.post("/workflows/w/versions", json={"name": "w", "graph": gray_batch([1])["graph"]})
        r = await http.post("/workflows/w/enqueue", json={"webhook": "https://evil.example.com/x"})
        assert r.status_code == 422 and "not allowed" in r.text
        await http.put("/queue/default/processor/pause")
        for ok in ("https://hooks.example.com/x", "https://a.example.org/x"):
            assert (await http.post("/workflows/w/enqueue", json={"webhook": ok})).status_code == 201
        assert (await http.post("/workflows/w/enqueue", json={"webhook": "https://example.org/x"})).status_code == 422


@pytest.mark.parametrize("web_settings_overrides", [{}])
async def test_webhooks_are_off_without_a_secret(server: Any, receiver: Receiver) -> None:
    async with server.async_client() as http:
        r = await http.post("/queue/default/enqueue_batch", json={"batch": gray_batch([1]), "webhook": receiver.url})
        assert r.status_code == 422 and "set plugins.web.webhook_secret" in r.text
        assert (await http.get("/queue/default/status")).json()["queue"]["total"] == 0


async def test_the_workflow_enqueue_carries_a_webhook(server: Any, receiver: Receiver) -> None:
    async with server.async_client() as http:
        body = {
            "name": "gray",
            "graph": gray_batch([1])["graph"],
            "inputs": [{"name": "level", "node_id": "img", "field": "value"}],
        }
        assert (await http.post("/workflows/g/versions", json=body)).status_code == 201
        r = await http.post("/workflows/g/enqueue", json={"inputs": {"level": 7}, "runs": 2, "webhook": receiver.url})
        assert r.status_code == 201, r.text
        notices = receiver.wait_for(2)
        assert sorted(n["item"]["item_id"] for n in notices) == r.json()["item_ids"]
        assert all(n["item"]["field_values"][0]["value"] == 7 and len(n["images"]) == 1 for n in notices)

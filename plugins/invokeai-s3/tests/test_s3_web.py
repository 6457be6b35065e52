"""Through the web API (invokeai-web, a real uvicorn server on 127.0.0.1) with `images = "s3"`: a graph
enqueued over HTTP stores its images in the bucket, and they are fetched back through the API, proxied
(`urls = "proxy"`, the default) or by a redirect to a presigned URL of the store (`urls = "presigned"`);
an unreachable store fails the queue item and no image appears."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from s3_helpers import MotoServer, free_port
from s3_nodes import ALL_NODES, GRAPH

pytest.importorskip("invokeai_web", reason="needs the invokeai-web plugin")
httpx = pytest.importorskip("httpx")


@pytest.fixture(autouse=True)
def _with_the_web_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKEAI_LOAD_PLUGINS", "s3,web")


@dataclass
class Web:
    url: str
    invoker: Any

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def client(self, **kwargs: Any) -> Any:
        return httpx.Client(base_url=self.api, timeout=30, **kwargs)


@pytest.fixture
def web(invokeai_host: Any, invokeai_config: Any, invokeai_register_nodes: Any) -> Iterator[Web]:
    """`invokeai serve` in a thread: the web plugin's app around an Invoker on this test's root."""
    from invokeai_web.app import ServerThread, create_app
    from invokeai_web.settings import WebSettings

    from invokeai_core import Invoker

    invokeai_register_nodes(*ALL_NODES, name="s3test")
    invoker = Invoker.from_config(invokeai_config, invokeai_host)
    app = create_app(invoker, WebSettings(port=0, queue_processor=True))
    with ServerThread(app) as url:
        yield Web(url, invoker)


def run_through_the_queue(http: Any, graph: dict[str, Any]) -> dict[str, Any]:
    r = http.post("/queue/default/enqueue_batch", json={"batch": {"graph": graph}})
    assert r.status_code == 201, r.text
    item_id = r.json()["item_ids"][0]
    deadline = time.monotonic() + 30
    while True:
        item: dict[str, Any] = http.get(f"/queue/default/i/{item_id}").json()
        if item["status"] in ("completed", "failed", "canceled"):
            return item
        assert time.monotonic() < deadline, item
        time.sleep(0.05)


def session_images(http: Any, session_id: str) -> list[dict[str, Any]]:
    r = http.get("/images", params={"session_id": session_id, "limit": 100})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_a_graph_run_over_http_lands_in_the_bucket_and_is_served_back(
    web: Web, bucket: str, s3_client: Any, keys_in: Any
) -> None:
    from PIL import Image

    with web.client() as http:
        item = run_through_the_queue(http, GRAPH)
        assert item["status"] == "completed", item.get("error_message")
        records = session_images(http, item["session_id"])
        assert {r["node_id"] for r in records} == {"make", "invert"}
        names = [r["image_name"] for r in records]
        assert keys_in(bucket, "invokeai/images/") == {f"invokeai/images/{n}" for n in names}
        for name in names:
            stored = s3_client.get_object(Bucket=bucket, Key=f"invokeai/images/{name}")["Body"].read()
            full = http.get(f"/images/i/{name}/full")
            assert full.status_code == 200  # proxied: the API read the object and served it
            assert full.headers["content-type"] == "image/png"
            assert full.content == stored
            thumb_key = f"invokeai/thumbnails/{Path(name).stem}.webp"
            thumb = http.get(f"/images/i/{name}/thumbnail")
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
            assert thumb.content == s3_client.get_object(Bucket=bucket, Key=thumb_key)["Body"].read()
        inverted = next(r for r in records if r["node_id"] == "invert")["image_name"]
        with Image.open(io.BytesIO(http.get(f"/images/i/{inverted}/full").content)) as png:
            assert png.size == (48, 32) and png.getpixel((0, 0)) == (255, 255, 155)

        # an upload goes to the bucket too, and a delete removes the objects
        buf = io.BytesIO()
        Image.new("RGB", (30, 20), (1, 2, 3)).save(buf, "PNG")
        r = http.post("/images/upload", files={"file": ("mine.png", buf.getvalue(), "image/png")})
        assert r.status_code == 201, r.text
        uploaded = r.json()["image_name"]
        assert f"invokeai/images/{uploaded}" in keys_in(bucket)
        assert http.delete(f"/images/i/{uploaded}").status_code == 204
        assert not any(uploaded[:-4] in k for k in keys_in(bucket))
        assert http.get(f"/images/i/{uploaded}/full").status_code == 404


@pytest.mark.parametrize("s3_settings", [{"urls": "presigned", "presigned_expires": 300}], indirect=True)
def test_presigned_urls_redirect_clients_to_the_store(
    web: Web, bucket: str, s3_client: Any, moto_server: MotoServer
) -> None:
    with web.client() as http:
        item = run_through_the_queue(http, GRAPH)
        assert item["status"] == "completed", item.get("error_message")
        name = session_images(http, item["session_id"])[0]["image_name"]
        stored = s3_client.get_object(Bucket=bucket, Key=f"invokeai/images/{name}")["Body"].read()
        r = http.get(f"/images/i/{name}/full")
        assert r.status_code == 307
        location = r.headers["location"]
        assert location.startswith(f"{moto_server.url}/{bucket}/invokeai/images/{name}?")
        assert "X-Amz-Expires=300" in location and "X-Amz-Signature=" in location
        # a client that follows the redirect gets the object straight from the store
        followed = http.get(f"/images/i/{name}/full", follow_redirects=True)
        assert followed.status_code == 200 and followed.content == stored
        thumb = http.get(f"/images/i/{name}/thumbnail", follow_redirects=True)
        assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"
        # unknown images are still refused by the API, never signed
        assert http.get("/images/i/never.png/full").status_code == 404


def test_an_unreachable_store_fails_the_item_and_no_image_appears(web: Web, monkeypatch: Any) -> None:
    from invokeai_s3.storage import make_client

    store = web.invoker.services.images
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setattr(store, "client", make_client(store.settings.model_copy(update={"endpoint_url": url})))
    with web.client() as http:
        item = run_through_the_queue(http, GRAPH)
        assert item["status"] == "failed"
        assert item["error_type"] == "S3ConnectionError"
        assert "unreachable" in item["error_message"] and url in item["error_message"]
        assert session_images(http, item["session_id"]) == []
        assert http.get("/images").json()["total"] == 0


def test_store_failures_are_5xx_that_say_which_store_and_why(web: Web, monkeypatch: Any) -> None:
    """Not the client's fault: an unreachable store is 503 (with Retry-After), a refusing one 502."""
    from invokeai_s3.storage import make_client
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "PNG")
    png = buf.getvalue()
    store = web.invoker.services.images
    with web.client() as http:
        r = http.post("/images/upload", files={"file": ("ok.png", png, "image/png")})
        assert r.status_code == 201, r.text
        stored = r.json()["image_name"]

        url = f"http://127.0.0.1:{free_port()}"
        good_client = store.client
        monkeypatch.setattr(store, "client", make_client(store.settings.model_copy(update={"endpoint_url": url})))
        r = http.post("/images/upload", files={"file": ("down.png", png, "image/png")})
        assert r.status_code == 503 and r.headers["retry-after"] == "5"
        assert r.json()["type"] == "S3ConnectionError" and url in r.json()["detail"]
        assert http.get(f"/images/i/{stored}/full").status_code == 503
        assert http.get("/images").json()["total"] == 1  # the refused upload left no record

        monkeypatch.setattr(store, "client", good_client)
        monkeypatch.setattr(store, "bucket", "no-such-bucket")
        r = http.post("/images/upload", files={"file": ("gone.png", png, "image/png")})
        assert r.status_code == 502 and r.json()["type"] == "S3RequestError"
        assert "no-such-bucket" in r.json()["detail"]
        assert http.get("/images").json()["total"] == 1

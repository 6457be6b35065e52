"""The kernel's image store contract, and the image service on top of it, against a real S3 endpoint
(moto's server over HTTP on 127.0.0.1); plus what is S3-specific: object layout, content types and
metadata, prefixes, listing, presigned URLs, the client's configuration."""

from __future__ import annotations

import io
import json
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from invokeai_s3.settings import S3Settings
from invokeai_s3.storage import METADATA_BUDGET, S3ImageFileStorage, S3RequestError
from PIL import Image

from invokeai_core import ImageFileStorageBase, ImageRecord
from invokeai_core.testing.contracts import (
    ImageFileStoreContract,
    ImageService,
    MemoryImageRecordStorage,
    checker_image,
    image_pixels,
)


def make_store(moto_url: str, bucket: str, **overrides: Any) -> S3ImageFileStorage:
    settings: dict[str, Any] = {
        "bucket": bucket,
        "prefix": f"contract-{uuid.uuid4().hex[:8]}/",
        "endpoint_url": moto_url,
        "region": "us-east-1",
        "addressing_style": "path",
        "max_attempts": 2,
        **overrides,
    }
    return S3ImageFileStorage(settings=S3Settings.parse(settings))


# == the kernel's contract ============================================================================
class TestS3ImageFileStorage(ImageFileStoreContract):
    """Every test of `ImageFileStoreContract` (the ones the local store passes), on S3."""

    @pytest.fixture
    def store(self, moto_server: Any, bucket: str) -> Any:
        store = make_store(moto_server.url, bucket)
        yield store
        store.close()

    def stored_files(self, store: ImageFileStorageBase) -> set[str] | None:
        assert isinstance(store, S3ImageFileStorage)
        keys: set[str] = set()
        pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.prefix)
        for page in pages:
            keys.update(obj["Key"][len(store.prefix) :] for obj in page.get("Contents") or [])
        return keys

    def test_cmyk_is_stored_as_rgb(self, store: ImageFileStorageBase) -> None:
        store.save("cmyk.png", Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
        loaded = store.get("cmyk.png")
        assert loaded.mode == "RGB"
        assert loaded.getpixel((0, 0)) == (255, 0, 0)


# == the image service on S3 (the kernel's image-service tests, with this store) ========================
class _FailingRecords(MemoryImageRecordStorage):
    def save(self, record: ImageRecord) -> None:
        raise RuntimeError("the records database is down")


@pytest.fixture
def store(moto_server: Any, bucket: str) -> Any:
    store = make_store(moto_server.url, bucket, prefix="svc/")
    yield store
    store.close()


def test_image_service_create_and_read(store: S3ImageFileStorage, keys_in: Any) -> None:
    service = ImageService(store, MemoryImageRecordStorage())
    record = service.create(
        checker_image(),
        session_id="s1",
        node_id="n1",
        is_intermediate=False,
        metadata={"seed": 7},
        graph={"nodes": {}, "edges": []},
    )
    name = record.image_name
    assert keys_in(store.bucket) == {f"svc/images/{name}", f"svc/thumbnails/{Path(name).stem}.webp"}
    assert image_pixels(service.get_pil(name)) == image_pixels(checker_image())
    with Image.open(io.BytesIO(store.get_bytes(name))) as png:
        text = dict(png.text)  # type: ignore[attr-defined]
    assert json.loads(text["invokeai_metadata"]) == {"seed": 7}
    assert json.loads(text["invokeai_graph"]) == {"nodes": {}, "edges": []}
    assert (text["invokeai_session_id"], text["invokeai_node_id"]) == ("s1", "n1")
    assert [r.image_name for r in service.list(session_id="s1").items] == [name]
    service.delete(name)
    assert keys_in(store.bucket) == set()
    with pytest.raises(KeyError):
        service.get_pil(name)


def test_image_service_is_atomic_when_the_record_store_fails(store: S3ImageFileStorage, keys_in: Any) -> None:
    service = ImageService(store, _FailingRecords())
    with pytest.raises(RuntimeError, match="database is down"):
        service.create(checker_image(), image_name="atomic.png")
    assert not store.exists("atomic.png")
    assert keys_in(store.bucket) == set()
    assert service.list().total == 0


def test_image_service_never_serves_an_object_without_a_record(store: S3ImageFileStorage) -> None:
    store.save("orphan.png", checker_image())
    service = ImageService(store, MemoryImageRecordStorage())
    with pytest.raises(KeyError):
        service.get_pil("orphan.png")


def test_orphans_are_collected_only_when_old_enough(store: S3ImageFileStorage, keys_in: Any) -> None:
    service = ImageService(store, MemoryImageRecordStorage())
    kept = service.create(checker_image())
    store.save("orphan.png", checker_image())
    assert service.collect_orphans(min_age=300) == []  # young: maybe a save in progress elsewhere
    assert service.collect_orphans(min_age=0) == ["orphan.png"]
    assert keys_in(store.bucket) == {f"svc/images/{kept.image_name}", f"svc/thumbnails/{kept.image_name[:-4]}.webp"}


def test_orphan_listing_can_be_turned_off(moto_server: Any, bucket: str) -> None:
    store = make_store(moto_server.url, bucket, collect_orphans=False)
    store.save("orphan.png", checker_image())
    assert store.list_names() is None
    assert ImageService(store, MemoryImageRecordStorage()).collect_orphans(min_age=0) == []
    assert store.exists("orphan.png")
    assert store.list_names("orph") == ["orphan.png"]  # an explicit listing still works


# == S3 specifics =====================================================================================
def test_objects_carry_content_types_and_the_image_metadata(store: S3ImageFileStorage, s3_client: Any) -> None:
    metadata = {"invokeai_metadata": json.dumps({"seed": 42, "prompt": "ein Bild über Äpfel"}), "note": "héllo"}
    store.save("meta.png", checker_image((64, 48)), metadata=metadata)
    full = s3_client.head_object(Bucket=store.bucket, Key="svc/images/meta.png")
    thumb = s3_client.head_object(Bucket=store.bucket, Key="svc/thumbnails/meta.webp")
    assert full["ContentType"] == "image/png"
    assert thumb["ContentType"] == "image/webp"
    assert full["Metadata"]["invokeai-kind"] == "image"
    assert thumb["Metadata"]["invokeai-kind"] == "thumbnail"
    decoded = store.get_metadata("meta.png")
    assert decoded["invokeai-image"] == "meta.png"
    assert (decoded["invokeai-width"], decoded["invokeai-height"], decoded["invokeai-mode"]) == ("64", "48", "RGB")
    assert json.loads(decoded["invokeai-metadata"]) == {"seed": 42, "prompt": "ein Bild über Äpfel"}
    assert decoded["invokeai-note"] == "héllo"
    assert all(v.isascii() for v in full["Metadata"].values())  # what S3 accepts in headers
    with pytest.raises(KeyError):
        store.get_metadata("never.png")


def test_metadata_too_large_for_headers_stays_in_the_png_only(store: S3ImageFileStorage) -> None:
    graph = json.dumps({"nodes": {f"n{i}": {"id": f"n{i}", "type": "add"} for i in range(200)}, "edges": []})
    store.save("big.png", checker_image(), metadata={"invokeai_graph": graph, "invokeai_session_id": "s-1"})
    decoded = store.get_metadata("big.png")
    assert decoded["invokeai-session-id"] == "s-1"
    assert "invokeai-graph" not in decoded
    assert decoded["invokeai-omitted"] == "invokeai-graph"
    assert sum(len(k) + len(v) for k, v in decoded.items()) <= METADATA_BUDGET + 100
    assert store.get("big.png").info["invokeai_graph"] == graph


def test_prefixes_keep_installations_apart(moto_server: Any, bucket: str, keys_in: Any) -> None:
    one = make_store(moto_server.url, bucket, prefix="one")
    two = make_store(moto_server.url, bucket, prefix="two/")
    assert one.prefix == "one/"
    one.save("a.png", checker_image())
    two.save("a.png", Image.new("RGB", (5, 5), "blue"))
    two.save("b.png", checker_image())
    assert one.list_names() == ["a.png"]
    assert two.list_names() == ["a.png", "b.png"]
    assert one.get("a.png").size == (64, 48)
    two.delete("a.png")
    assert one.exists("a.png") and not two.exists("a.png")
    assert keys_in(bucket, "one/") == {"one/images/a.png", "one/thumbnails/a.webp"}


def test_listing_by_prefix_pages_through_the_bucket(store: S3ImageFileStorage, s3_client: Any) -> None:
    store.list_page_size = 7  # S3's pages hold 1,000 keys: page through 55 with smaller ones
    for i in range(50):
        s3_client.put_object(Bucket=store.bucket, Key=f"svc/images/bulk-{i:02d}.png", Body=b"x")
    s3_client.put_object(Bucket=store.bucket, Key="svc/images/nested/x.png", Body=b"x")
    s3_client.put_object(Bucket=store.bucket, Key="svc/images/.partial", Body=b"x")
    s3_client.put_object(Bucket=store.bucket, Key="elsewhere/images/y.png", Body=b"x")
    store.save("other.png", checker_image((8, 8)))
    requests: list[str] = []
    store.client.meta.events.register("before-send.s3.ListObjectsV2", lambda request, **kw: requests.append("list"))
    names = store.list_names()
    assert names == [f"bulk-{i:02d}.png" for i in range(50)] + ["other.png"]
    assert len(requests) == 8  # 53 keys under svc/images/, 7 per page
    assert store.list_names("bulk-4") == [f"bulk-4{i}.png" for i in range(10)]
    assert store.list_names("nothing-") == []


def test_age_of_an_object(store: S3ImageFileStorage) -> None:
    store.save("aged.png", checker_image((8, 8)))
    age = store.age_seconds("aged.png")
    assert age is not None and -60 < age < 60
    assert store.age_seconds("never.png") is None


def test_urls_are_proxied_by_default(store: S3ImageFileStorage) -> None:
    store.save("p.png", checker_image())
    assert store.get_url("p.png") is None
    assert store.get_url("p.png", thumbnail=True) is None
    assert store.get_path("p.png") is None


def test_presigned_urls_fetch_the_objects(moto_server: Any, bucket: str) -> None:
    store = make_store(moto_server.url, bucket, urls="presigned", presigned_expires=120)
    store.save("signed.png", checker_image((300, 100)))
    url = store.get_url("signed.png")
    assert url is not None and url.startswith(moto_server.url + f"/{bucket}/")
    assert "X-Amz-Expires=120" in url and "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == store.get_bytes("signed.png")
    thumb_url = store.get_url("signed.png", thumbnail=True)
    assert thumb_url is not None
    with urllib.request.urlopen(thumb_url, timeout=10) as resp:
        data = resp.read()
    with Image.open(io.BytesIO(data)) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (256, 85))


def test_the_client_follows_the_settings(moto_server: Any, bucket: str) -> None:
    store = make_store(
        moto_server.url,
        bucket,
        retry_mode="adaptive",
        max_attempts=7,
        connect_timeout=1.5,
        read_timeout=4,
        region="eu-west-3",
    )
    config = store.client.meta.config
    assert config.retries == {"mode": "adaptive", "total_max_attempts": 7}
    assert (config.connect_timeout, config.read_timeout) == (1.5, 4)
    assert config.s3 == {"addressing_style": "path"}
    assert store.client.meta.region_name == "eu-west-3"
    assert store.client.meta.endpoint_url == moto_server.url


def test_credentials_come_from_a_profile(moto_server: Any, bucket: str, tmp_path: Path, monkeypatch: Any) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text("[studio]\naws_access_key_id = from-profile\naws_secret_access_key = secret\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = make_store(moto_server.url, bucket, profile="studio")
    assert store.client._request_signer._credentials.access_key == "from-profile"
    store.save("via-profile.png", checker_image((8, 8)))
    assert store.exists("via-profile.png")


def test_deleting_in_a_bucket_that_does_not_exist_is_an_error(moto_server: Any) -> None:
    store = make_store(moto_server.url, "no-such-bucket-here")
    with pytest.raises(S3RequestError, match="NoSuchBucket"):
        store.delete("x.png")

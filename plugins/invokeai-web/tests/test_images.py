"""Images over HTTP: uploads (formats, size limit, decompression bombs), listing, files, star, delete,
and names that try to leave the image folder."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest


def encoded(fmt: str, size: tuple[int, int] = (20, 10), mode: str = "RGB", color: Any = (200, 10, 10)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, fmt)
    return buf.getvalue()


def noise_png() -> bytes:
    import os

    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(buf, "PNG")
    return buf.getvalue()


def upload(http: Any, data: bytes, name: str = "x.png", **form: Any) -> Any:
    return http.post("/images/upload", files={"file": (name, data, "application/octet-stream")}, data=form)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_upload_each_format_and_read_it_back(server: Any, fmt: str) -> None:
    from PIL import Image

    with server.client() as http:
        r = upload(http, encoded(fmt), name=f"photo.{fmt.lower()}")
        assert r.status_code == 201, r.text
        record = r.json()
        assert (record["width"], record["height"], record["is_intermediate"]) == (20, 10, False)
        name = record["image_name"]
        assert name.endswith(".png") and "photo" not in name
        full = http.get(f"/images/i/{name}/full")
        assert full.status_code == 200 and full.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(full.content)).convert("RGB")
        r_, g_, b_ = image.getpixel((5, 5))
        assert abs(r_ - 200) < 8 and g_ < 20 and b_ < 20
        assert http.get(f"/images/i/{name}/thumbnail").status_code == 200


def test_exif_orientation_is_applied(server: Any) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buf = io.BytesIO()
    Image.new("RGB", (40, 10), "white").save(buf, "JPEG", exif=exif)
    with server.client() as http:
        record = upload(http, buf.getvalue(), "rotated.jpg").json()
        assert (record["width"], record["height"]) == (10, 40)


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"GIF89a" + encoded("GIF", mode="P", color=1)[6:], "GIF images are not accepted: upload PNG, JPEG or WebP"),
        (encoded("BMP"), "BMP images are not accepted: upload PNG, JPEG or WebP"),
        (b"just some text, not an image", "the file is not an image (upload PNG, JPEG or WebP)"),
        (noise_png()[:2000], "the image cannot be decoded: "),  # truncated in the middle of its pixels
    ],
    ids=["gif", "bmp", "text", "truncated-png"],
)
def test_other_formats_and_broken_files_are_refused(server: Any, data: bytes, detail: str) -> None:
    with server.client() as http:
        r = upload(http, data, "image.png")
        assert r.status_code == 415, r.text
        assert r.json()["detail"].startswith(detail) and " object at 0x" not in r.text  # no Python reprs
        assert http.get("/images").json()["total"] == 0


@pytest.fixture
def web_settings_overrides() -> dict[str, Any]:
    return {"max_upload_mb": 0.25, "max_image_pixels": 4_000_000}


def test_uploads_over_the_size_limit_are_413(server: Any) -> None:
    import os

    import httpx

    big = os.urandom(300 * 1024)
    with server.client() as http:
        r = upload(http, big, "big.png")
        assert r.status_code == 413 and "0.25 MiB" in r.json()["detail"]

        body = (
            b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n" + big + b"\r\n--xyz--\r\n"
        )

        def chunks() -> Any:  # no Content-Length: the limit is counted as the body streams in
            for i in range(0, len(body), 16384):
                yield body[i : i + 16384]

        r = httpx.post(
            server.api + "/images/upload",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        )
        assert r.status_code == 413
        assert http.get("/images").json()["total"] == 0


def test_decompression_bombs_are_refused(server: Any) -> None:
    from PIL import Image

    bomb = io.BytesIO()
    Image.new("1", (3000, 3000)).save(bomb, "PNG")  # 9 megapixels in a few KiB
    assert len(bomb.getvalue()) < 50_000
    huge = io.BytesIO()
    Image.new("1", (15000, 15000)).save(huge, "PNG")  # past PIL's own bomb limit as well
    with server.client() as http:
        r = upload(http, bomb.getvalue(), "bomb.png")
        assert r.status_code == 413 and "3000x3000" in r.json()["detail"]
        r = upload(http, huge.getvalue(), "huge.png")
        assert r.status_code == 413
        assert http.get("/images").json()["total"] == 0


def test_list_filter_star_and_delete(server: Any) -> None:
    with server.client() as http:
        a = upload(http, encoded("PNG")).json()["image_name"]
        b = upload(http, encoded("PNG"), is_intermediate="true").json()["image_name"]
        c = upload(http, encoded("PNG"), session_id="s1").json()["image_name"]
        page = http.get("/images").json()
        assert page["total"] == 3 and [i["image_name"] for i in page["items"]] == [c, b, a]
        assert [i["image_name"] for i in http.get("/images", params={"is_intermediate": True}).json()["items"]] == [b]
        assert [i["image_name"] for i in http.get("/images", params={"session_id": "s1"}).json()["items"]] == [c]
        assert [i["image_name"] for i in http.get("/images", params={"limit": 1, "offset": 1}).json()["items"]] == [b]

        r = http.patch(f"/images/i/{a}", json={"starred": True})
        assert r.status_code == 200 and r.json()["starred"] is True
        assert [i["image_name"] for i in http.get("/images", params={"starred": True}).json()["items"]] == [a]
        r = http.patch(f"/images/i/{a}", json={"starred": False})
        assert r.json()["starred"] is False

        assert http.delete(f"/images/i/{a}").status_code == 204
        assert http.get(f"/images/i/{a}").status_code == 404
        assert http.get(f"/images/i/{a}/full").status_code == 404
        assert http.delete(f"/images/i/{a}").status_code == 404
        assert http.get("/images").json()["total"] == 2
        assert not (Path(server.invoker.config.outputs_dir) / "images" / a).exists()


def raw_request(url: str, method: str, path: str) -> tuple[int, bytes]:
    """Send the path exactly as written (HTTP clients normalise `..` segments away)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_names_that_leave_the_image_folder_are_400_or_404(server: Any, invokeai_root: Path) -> None:
    secret = invokeai_root / "secret.png"
    secret.write_bytes(encoded("PNG"))
    (invokeai_root / "outputs" / "images").mkdir(parents=True, exist_ok=True)
    with server.client() as http:
        upload(http, encoded("PNG"))  # the folders exist
        attempts = [
            "..%2F..%2Fsecret.png",
            "..%2Fsecret.png",
            "%2E%2E%2F%2E%2E%2Fsecret.png",
            "..",
            "%2E%2E",
            ".secret.png",
            "a..b.png",
            "%2Fetc%2Fpasswd",
            "..%5C..%5Csecret.png",
            "C:%5Csecret.png",
            "secret.png%00.png",
        ]
        for name in attempts:
            for suffix in ("", "/full", "/thumbnail"):
                status, body = raw_request(server.url, "GET", f"/api/v1/images/i/{name}{suffix}")
                assert status in (400, 404), (name, suffix, status)
                assert body != secret.read_bytes()
            status, _ = raw_request(server.url, "DELETE", f"/api/v1/images/i/{name}")
            assert status in (400, 404, 405), (name, status)
        r = http.get("/images/i/.secret.png")
        assert r.status_code == 400 and "invalid image name" in r.json()["detail"]
        assert secret.exists()

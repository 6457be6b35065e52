"""`S3ImageFileStorage`: the `images` service on Amazon S3 or any S3-compatible object store.

Imported only when the configuration selects `services.images = "s3"` (it imports boto3).

Layout in the bucket, under the configured prefix:

* `<prefix>images/<name>`: the PNG, `Content-Type: image/png`, with the generation metadata in its
  text chunks (like the local store's files) and, as far as S3's 2 KB limit allows, as object
  metadata (`x-amz-meta-invokeai-*`: image name, size, mode, session, node, parameters, graph);
* `<prefix>thumbnails/<stem>.webp`: the thumbnail, `Content-Type: image/webp`.

A PUT is atomic in S3: an object is either all there or not there. The image is encoded before
anything is sent (so an image PNG cannot hold fails with nothing written), the full image is
stored before its thumbnail, and if the thumbnail cannot be stored the full image is removed again.
The image service writes the record only after `save` returned, so an image whose object was not
stored never gets a record; a full image left behind by a failure at the worst moment has no record
and is removed by the orphan collection the queue processor runs at start-up.

Every request goes through botocore's retry handler (`retry_mode`, `max_attempts`): throttling,
5xx answers, timeouts and refused connections are retried with exponential backoff. A final failure
raises `S3ConnectionError` (the store cannot be reached) or `S3RequestError` (it answered no:
access denied, no such bucket, bad credentials, ...), each one line saying what was attempted, on
which bucket and endpoint, and what to check.
"""

from __future__ import annotations

import datetime as _dt
import io
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import quote, unquote

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from invokeai_core import ConfigError, ImageFileStorageBase, StorageError, StorageUnavailableError
from invokeai_s3.settings import CREDENTIALS_HELP, S3Settings

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import InvokeAIConfig

__all__ = ["S3ConnectionError", "S3ImageFileStorage", "S3RequestError", "S3StorageError", "make_client"]

#: Modes PNG cannot store that convert to RGB without surprise (as the local store does).
_CONVERT_TO_RGB = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})
#: S3 limits user-defined metadata to 2 KB (keys and values, UTF-8); keep a margin.
METADATA_BUDGET = 1900
META_PREFIX = "invokeai-"
#: Printable ASCII except '%' passes through metadata values unchanged; everything else is %-encoded.
_META_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%")
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


_loader_lock = threading.Lock()
_shared_loader: Any = None


class S3StorageError(StorageError):
    """A request to the object store failed for good (after retries): 502 through the web API."""

    def __init__(
        self,
        message: str,
        *,
        operation: str,
        key: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.operation = operation
        self.key = key
        self.code = code
        self.status = status


class S3ConnectionError(S3StorageError, StorageUnavailableError):
    """The object store could not be reached (refused, timed out, DNS, TLS), after every retry: 503."""


class S3RequestError(S3StorageError):
    """The object store answered with an error: access denied, no such bucket, bad or missing
    credentials, or throttling / a server error that lasted through every retry."""


def _safe_name(image_name: str) -> str:
    if not image_name or "/" in image_name or "\\" in image_name or image_name.startswith("."):
        raise KeyError(f"invalid image name {image_name!r}")
    return image_name


def make_client(settings: S3Settings) -> Any:
    """A boto3 S3 client for `settings`: credentials from the AWS chain, botocore's retries."""
    botocore_session = botocore.session.Session()
    with _loader_lock:  # share the parsed service models between clients (0.2 s each otherwise)
        global _shared_loader
        if _shared_loader is None:
            _shared_loader = botocore_session.get_component("data_loader")
        else:
            botocore_session.register_component("data_loader", _shared_loader)
    config = botocore.config.Config(
        region_name=settings.region,
        retries={"mode": settings.retry_mode, "total_max_attempts": settings.max_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3={"addressing_style": settings.addressing_style},
        signature_version="s3v4",
        user_agent_extra="invokeai-s3",
    )
    try:
        session = boto3.session.Session(
            botocore_session=botocore_session, profile_name=settings.profile, region_name=settings.region
        )
        return session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except botocore.exceptions.ProfileNotFound as e:
        raise ConfigError(
            f"{e} (plugins.s3.profile or AWS_PROFILE): name a profile of ~/.aws/credentials or ~/.aws/config"
        ) from None


def encode_image(image: Image, metadata: dict[str, str] | None, thumbnail_size: int) -> tuple[bytes, bytes]:
    """The PNG (with `metadata` as iTXt chunks) and the WebP thumbnail, as bytes."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in (metadata or {}).items():
        info.add_itxt(key, value)
    if image.mode in _CONVERT_TO_RGB:
        image = image.convert("RGB")
    full = io.BytesIO()
    image.save(full, "PNG", pnginfo=info)
    small = image.copy()
    small.thumbnail((thumbnail_size, thumbnail_size))
    if small.mode not in ("RGB", "RGBA"):
        small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
    thumb = io.BytesIO()
    small.save(thumb, "WEBP", quality=80)
    return full.getvalue(), thumb.getvalue()


def object_metadata(image_name: str, image: Image, metadata: dict[str, str] | None, *, kind: str) -> dict[str, str]:
    """S3 user metadata for an image object: its name, size and mode first, then the entries of
    `metadata` smallest first while they fit S3's limit. Keys become `invokeai-<key>` (lower case,
    `_` as `-`); values are %-encoded outside printable ASCII. Entries that do not fit are named in
    `invokeai-omitted` (all of them are always in the PNG's text chunks)."""
    out = {
        f"{META_PREFIX}image": quote(image_name, safe=_META_SAFE),
        f"{META_PREFIX}kind": kind,
        f"{META_PREFIX}width": str(image.width),
        f"{META_PREFIX}height": str(image.height),
        f"{META_PREFIX}mode": image.mode,
    }
    used = sum(len(k) + len(v) for k, v in out.items())
    omitted: list[str] = []
    entries = []
    for key, value in (metadata or {}).items():
        name = key.lower().replace("_", "-")
        name = "".join(c if c.isascii() and (c.isalnum() or c == "-") else "-" for c in name)
        if not name.startswith(META_PREFIX):
            name = META_PREFIX + name
        entries.append((name, quote(value, safe=_META_SAFE)))
    for name, value in sorted(entries, key=lambda kv: len(kv[0]) + len(kv[1])):
        if name in out:
            continue
        size = len(name) + len(value)
        if used + size > METADATA_BUDGET:
            omitted.append(name)
            continue
        out[name] = value
        used += size
    if omitted:
        out[f"{META_PREFIX}omitted"] = ",".join(omitted)[: max(0, METADATA_BUDGET - used)] or "..."
    return out


class S3ImageFileStorage(ImageFileStorageBase):
    """Image files as objects of an S3 bucket. Built as `S3ImageFileStorage(config)` by the kernel
    (settings from `[plugins.s3]`), or with `settings=` (and optionally a ready `client=`)."""

    #: Keys per ListObjectsV2 request (S3's maximum).
    list_page_size = 1000

    def __init__(
        self, config: InvokeAIConfig | None = None, *, settings: S3Settings | None = None, client: Any = None
    ) -> None:
        self.settings = settings if settings is not None else S3Settings.from_config(config)
        self.bucket = self.settings.bucket
        self.prefix = self.settings.prefix
        self.client = client if client is not None else make_client(self.settings)
        self._closed = False
        self._lock = threading.Lock()

    # -- keys -------------------------------------------------------------------------------------
    def image_key(self, image_name: str) -> str:
        return f"{self.prefix}images/{_safe_name(image_name)}"

    def thumbnail_key(self, image_name: str) -> str:
        name = _safe_name(image_name)
        stem = name.rsplit(".", 1)[0] if "." in name else name
        return f"{self.prefix}thumbnails/{stem}.webp"

    def _key(self, image_name: str, thumbnail: bool) -> str:
        return self.thumbnail_key(image_name) if thumbnail else self.image_key(image_name)

    @property
    def location(self) -> str:
        """`s3://bucket/prefix` and the endpoint, for messages."""
        where = f"s3://{self.bucket}/{self.prefix}"
        endpoint = self.settings.endpoint_url or getattr(getattr(self.client, "meta", None), "endpoint_url", None)
        return f"{where} at {endpoint}" if endpoint else where

    # -- errors -----------------------------------------------------------------------------------
    def _fail(self, error: Exception, operation: str, key: str | None) -> NoReturn:
        what = f"{operation} {key!r}" if key else operation
        attempts = self.settings.max_attempts
        if isinstance(error, botocore.exceptions.ClientError):
            err = error.response.get("Error", {})
            meta = error.response.get("ResponseMetadata", {})
            code = str(err.get("Code") or meta.get("HTTPStatusCode") or "error")
            status = meta.get("HTTPStatusCode")
            message = err.get("Message") or ""
            if code == "404" and key is None:  # HEAD on the bucket has no body to name the error
                code, message = "NoSuchBucket", "the bucket does not exist"
            tries = int(meta.get("RetryAttempts", 0)) + 1
            hint = _hint_for(code, status)
            detail = f"{code}" + (f" ({message})" if message and message != code else "")
            raise S3RequestError(
                f"S3 refused to {what} in {self.location}: {detail}"
                + (f" after {tries} attempts" if tries > 1 else "")
                + f"; {hint}",
                operation=operation,
                key=key,
                code=code,
                status=status,
            ) from error
        if isinstance(error, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError):
            raise S3RequestError(
                f"cannot {what} in {self.location}: no usable AWS credentials ({error}); {CREDENTIALS_HELP}",
                operation=operation,
                key=key,
                code="NoCredentials",
            ) from error
        if isinstance(
            error,
            botocore.exceptions.ConnectionError
            | botocore.exceptions.HTTPClientError
            | botocore.exceptions.IncompleteReadError,
        ):
            raise S3ConnectionError(
                f"cannot {what} in {self.location}: the store is unreachable after {attempts} "
                f"attempt{'s' if attempts != 1 else ''} ({error}); check plugins.s3.endpoint_url, "
                "plugins.s3.region and the network",
                operation=operation,
                key=key,
                code=type(error).__name__,
            ) from error
        raise S3StorageError(
            f"cannot {what} in {self.location}: {type(error).__name__}: {error}",
            operation=operation,
            key=key,
            code=type(error).__name__,
        ) from error

    def _call(self, method: str, operation: str, key: str | None, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            self._fail(e, operation, key)

    @staticmethod
    def _is_not_found(error: botocore.exceptions.ClientError) -> bool:
        code = str(error.response.get("Error", {}).get("Code", ""))
        return code in _NOT_FOUND_CODES

    # -- the contract -----------------------------------------------------------------------------
    def save(
        self,
        image_name: str,
        image: Image,
        *,
        metadata: dict[str, str] | None = None,
        thumbnail_size: int = 256,
    ) -> None:
        key, thumb_key = self.image_key(image_name), self.thumbnail_key(image_name)
        full, thumb = encode_image(image, metadata, thumbnail_size)  # fails before anything is sent
        stored = image.convert("RGB") if image.mode in _CONVERT_TO_RGB else image
        self._call(
            "put_object",
            "store",
            key,
            Key=key,
            Body=full,
            ContentType="image/png",
            Metadata=object_metadata(image_name, stored, metadata, kind="image"),
        )
        try:
            self._call(
                "put_object",
                "store the thumbnail",
                thumb_key,
                Key=thumb_key,
                Body=thumb,
                ContentType="image/webp",
                Metadata=object_metadata(image_name, stored, None, kind="thumbnail"),
            )
        except BaseException:
            try:  # no image without its thumbnail; if this fails too, orphan collection removes it
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except Exception:
                pass
            raise

    def get_bytes(self, image_name: str, *, thumbnail: bool = False) -> bytes:
        key = self._key(image_name, thumbnail)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = response["Body"].read()
            return data
        except botocore.exceptions.ClientError as e:
            if self._is_not_found(e):
                raise KeyError(f"image '{image_name}' does not exist") from None
            self._fail(e, "read", key)
        except botocore.exceptions.BotoCoreError as e:
            self._fail(e, "read", key)

    def get(self, image_name: str) -> Image:
        from PIL import Image as PILImage

        data = self.get_bytes(image_name)
        with PILImage.open(io.BytesIO(data)) as img:
            img.load()
            copy = img.copy()
            copy.info.update(getattr(img, "text", None) or {})
            return copy

    def head(self, image_name: str, *, thumbnail: bool = False) -> dict[str, Any] | None:
        """The object's headers (`ContentType`, `ContentLength`, `LastModified`, `Metadata`, ...), or
        None if it does not exist."""
        key = self._key(image_name, thumbnail)
        try:
            response: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
            return response
        except botocore.exceptions.ClientError as e:
            if self._is_not_found(e):
                return None
            self._fail(e, "look up", key)
        except botocore.exceptions.BotoCoreError as e:
            self._fail(e, "look up", key)

    def get_metadata(self, image_name: str) -> dict[str, str]:
        """The image object's `invokeai-*` metadata, decoded. Raises `KeyError` if it does not exist."""
        head = self.head(image_name)
        if head is None:
            raise KeyError(f"image '{image_name}' does not exist")
        return {k: unquote(v) for k, v in (head.get("Metadata") or {}).items()}

    def exists(self, image_name: str) -> bool:
        try:
            return self.head(image_name) is not None
        except KeyError:  # not a valid image name
            return False

    def delete(self, image_name: str) -> None:
        keys = [self.image_key(image_name), self.thumbnail_key(image_name)]
        # DeleteObjects is one request for both; deleting a missing key is not an error in S3.
        response = self._call(
            "delete_objects",
            "delete",
            keys[0],
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        errors = response.get("Errors") or []
        if errors:
            first = errors[0]
            raise S3RequestError(
                f"S3 refused to delete {first.get('Key')!r} in {self.location}: {first.get('Code')} "
                f"({first.get('Message')}); {_hint_for(str(first.get('Code')), None)}",
                operation="delete",
                key=first.get("Key"),
                code=first.get("Code"),
            )

    def get_url(self, image_name: str, *, thumbnail: bool = False) -> str | None:
        """A presigned GET URL when `urls = "presigned"`; None (serve through the API) otherwise."""
        if self.settings.urls != "presigned":
            return None
        key = self._key(image_name, thumbnail)
        try:
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.settings.presigned_expires,
            )
            return url
        except botocore.exceptions.BotoCoreError as e:
            self._fail(e, "sign a URL for", key)

    def iter_names(self, name_prefix: str = "") -> Iterator[str]:
        """Image names under the store's prefix starting with `name_prefix`, in key order, one
        ListObjectsV2 page (1,000 names) at a time."""
        base = f"{self.prefix}images/"
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=base + name_prefix, PaginationConfig={"PageSize": self.list_page_size}
        )
        try:
            for page in pages:
                for obj in page.get("Contents") or []:
                    name = obj["Key"][len(base) :]
                    if name and "/" not in name and not name.startswith("."):
                        yield name
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            self._fail(e, "list", base + name_prefix)

    def list_names(self, name_prefix: str = "") -> list[str] | None:
        """Every stored image name (starting with `name_prefix`); None when `collect_orphans` is off
        and no prefix is given, so start-up does not list a very large bucket."""
        if not name_prefix and not self.settings.collect_orphans:
            return None
        return sorted(self.iter_names(name_prefix))

    def age_seconds(self, image_name: str) -> float | None:
        try:
            head = self.head(image_name)
        except (KeyError, S3StorageError):
            return None
        modified = head.get("LastModified") if head else None
        if not isinstance(modified, _dt.datetime):
            return None
        return (_dt.datetime.now(_dt.UTC) - modified).total_seconds()

    # -- checks -----------------------------------------------------------------------------------
    def check(self, *, write: bool = True) -> list[str]:
        """Check that the bucket can be reached, listed and (with `write`) written, read back and
        deleted, and that presigned URLs work when `urls = "presigned"`. Returns one line per step;
        raises `S3StorageError` at the first failing step."""
        import urllib.error
        import urllib.request
        import uuid

        steps = []
        self._call("head_bucket", "reach the bucket", None)
        steps.append(f"bucket: {self.location} answers")
        self._call("list_objects_v2", "list", f"{self.prefix}images/", Prefix=f"{self.prefix}images/", MaxKeys=1)
        steps.append("list: ok")
        if not write:
            return steps
        key = f"{self.prefix}.invokeai-s3-check-{uuid.uuid4().hex[:12]}"  # never listed as an image
        body = b"invokeai-s3 check " + key.encode()
        self._call("put_object", "store", key, Key=key, Body=body, ContentType="text/plain")
        try:
            got = self._call("get_object", "read", key, Key=key)["Body"].read()
            if got != body:
                raise S3StorageError(f"reading {key!r} back returned other bytes", operation="read", key=key)
            steps.append("write, read back: ok")
            if self.settings.urls == "presigned":
                url = self.client.generate_presigned_url(
                    "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=60
                )
                try:
                    with urllib.request.urlopen(url, timeout=self.settings.read_timeout) as resp:
                        ok = resp.read() == body
                except (urllib.error.URLError, OSError) as e:
                    raise S3ConnectionError(
                        f"a presigned URL of {self.location} cannot be fetched from here ({e}); clients must "
                        "reach the store's endpoint when urls = 'presigned'",
                        operation="fetch a presigned URL",
                        key=key,
                    ) from None
                if not ok:
                    raise S3StorageError("a presigned URL returned other bytes", operation="presign", key=key)
                steps.append("presigned URL: ok")
        finally:
            self._call("delete_object", "delete", key, Key=key)
        steps.append("delete: ok")
        return steps

    # -- life cycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the client's connection pool."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        close = getattr(self.client, "close", None)
        if callable(close):
            close()

    def stop(self) -> None:
        """The Invoker stopped: close the client."""
        self.close()


def _hint_for(code: str, status: Any) -> str:
    if code in ("NoSuchBucket",):
        return "check plugins.s3.bucket (the bucket must exist) and plugins.s3.endpoint_url"
    if code in ("AccessDenied", "AllAccessDisabled", "403", "Forbidden", "AccountProblem"):
        return "the credentials in use may not write to this bucket: check the bucket policy and IAM permissions"
    if code in (
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidClientTokenId",
    ):
        return "the store does not accept these credentials: " + CREDENTIALS_HELP
    if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "301"):
        return "the bucket is in another region: set plugins.s3.region"
    if isinstance(status, int) and status >= 500:
        return "the store kept failing; try again later or raise plugins.s3.max_attempts"
    return "check the [plugins.s3] settings and the credentials"

"""Images: upload, list, record, full image, thumbnail, delete, star.

* **Names** are checked before anything touches a store: 1-255 letters, digits, `.`, `_`, `-`,
  starting with a letter or digit, and no `..` (so no path separators, no absolute paths, no
  traversal): 400 otherwise. An unknown name is 404.
* **Uploads** are PNG, JPEG or WebP, decided by the file's content, not its name or declared type
  (415 otherwise); the body is limited by `max_upload_mb` (413); an image with more than
  `max_image_pixels` pixels is refused before it is decoded (413), which stops decompression bombs.
  EXIF orientation is applied; the image is stored as PNG under a new name.
* **Files** are served from the image store, or redirected to the store's own URL when it has one
  (a presigned URL of cloud storage).
"""

from __future__ import annotations

import io
import re
import warnings
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, UploadFile
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, StrictBool

from invokeai_core import ImageRecord, Page
from invokeai_web.dependencies import InvokerDep, SettingsDep
from invokeai_web.errors import error_responses

router = APIRouter(prefix="/images", tags=["images"])

IMAGE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
ALLOWED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}

ImageName = Annotated[
    str,
    Path(
        description="The image name: letters, digits, '.', '_', '-' (no paths, no '..'); 400 otherwise",
        # documented, not enforced by FastAPI (which would answer 422): `check_image_name` answers 400
        json_schema_extra={"pattern": IMAGE_NAME_RE.pattern},
    ),
]


def check_image_name(image_name: str) -> str:
    if not IMAGE_NAME_RE.match(image_name) or ".." in image_name:
        raise HTTPException(400, f"invalid image name {image_name[:80]!r}: use letters, digits, '.', '_', '-'")
    return image_name


def _record(invoker: Any, image_name: str) -> ImageRecord:
    check_image_name(image_name)
    try:
        record: ImageRecord = invoker.services.image_service.get_record(image_name)
    except KeyError:
        raise HTTPException(404, f"image '{image_name}' does not exist") from None
    return record


class ImageUpdate(BaseModel):
    starred: StrictBool | None = None
    is_intermediate: StrictBool | None = None


def decode_upload(data: bytes, max_pixels: int) -> Any:
    """The uploaded image as a loaded PIL image; refuses other formats and oversized images."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        image: Image.Image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError):
        raise HTTPException(415, "the file is not an image (upload PNG, JPEG or WebP)") from None
    except Image.DecompressionBombError as e:
        raise HTTPException(413, str(e)) from None
    if image.format not in ALLOWED_FORMATS:
        raise HTTPException(415, f"{image.format or 'this'} images are not accepted: upload PNG, JPEG or WebP")
    width, height = image.size
    if width * height > max_pixels:
        raise HTTPException(
            413, f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise HTTPException(413, str(e)) from None
    except (OSError, ValueError, SyntaxError) as e:
        raise HTTPException(415, f"the image cannot be decoded: {e}") from None
    if image.mode not in ("RGB", "RGBA", "L", "LA", "I;16", "I", "P", "1"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return image


@router.post(
    "/upload",
    status_code=201,
    response_model=ImageRecord,
    summary="Upload an image",
    responses=error_responses({415: "Not a PNG, JPEG or WebP image (decided by the content)"}),
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {"encoding": {"file": {"contentType": ", ".join(ALLOWED_FORMATS.values())}}}
            }
        }
    },
)
def upload_image(
    invoker: InvokerDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A PNG, JPEG or WebP image")],
    is_intermediate: Annotated[bool, Form(description="Hide it from the gallery")] = False,
    session_id: Annotated[str | None, Form(max_length=128)] = None,
) -> ImageRecord:
    data = file.file.read()
    image = decode_upload(data, settings.max_image_pixels)
    metadata = {"uploaded_as": (file.filename or "")[:255]} if file.filename else None
    record: ImageRecord = invoker.services.image_service.create(
        image, is_intermediate=is_intermediate, session_id=session_id or None, metadata=metadata
    )
    return record


@router.get("", response_model=Page[ImageRecord], summary="List images")
def list_images(
    invoker: InvokerDep,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    session_id: Annotated[str | None, Query(max_length=128)] = None,
    is_intermediate: bool | None = None,
    starred: bool | None = None,
) -> Page[ImageRecord]:
    """Newest first, filtered by session, intermediate and starred flags."""
    page: Page[ImageRecord] = invoker.services.image_service.list(
        offset=offset, limit=limit, session_id=session_id, is_intermediate=is_intermediate, starred=starred
    )
    return page


@router.get("/i/{image_name}", response_model=ImageRecord, summary="Get an image record")
def get_image_record(invoker: InvokerDep, image_name: ImageName) -> ImageRecord:
    return _record(invoker, image_name)


def _file(invoker: Any, image_name: str, *, thumbnail: bool) -> Response:
    _record(invoker, image_name)
    files = invoker.services.images
    url = files.get_url(image_name, thumbnail=thumbnail)
    if url:
        return RedirectResponse(url, status_code=307)
    try:
        data = files.get_bytes(image_name, thumbnail=thumbnail)
    except KeyError:
        raise HTTPException(404, f"image '{image_name}' has no file") from None
    return Response(
        data,
        media_type="image/webp" if thumbnail else "image/png",
        headers={"Cache-Control": "private, max-age=86400"},
    )


def _file_responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": {media_type: {"schema": {"type": "string", "format": "binary"}}}, "description": "The file"},
        307: {"description": "Redirect to the image store's own URL"},
    }


@router.get(
    "/i/{image_name}/full", response_class=Response, responses=_file_responses("image/png"), summary="Get the image"
)
def get_image_full(invoker: InvokerDep, image_name: ImageName) -> Response:
    """The full image (PNG, with the generation metadata in its text chunks)."""
    return _file(invoker, image_name, thumbnail=False)


@router.get(
    "/i/{image_name}/thumbnail",
    response_class=Response,
    responses=_file_responses("image/webp"),
    summary="Get the thumbnail",
)
def get_image_thumbnail(invoker: InvokerDep, image_name: ImageName) -> Response:
    """A thumbnail (WebP, at most 256 pixels a side)."""
    return _file(invoker, image_name, thumbnail=True)


@router.patch("/i/{image_name}", response_model=ImageRecord, summary="Star or unstar an image")
def update_image(invoker: InvokerDep, image_name: ImageName, changes: ImageUpdate) -> ImageRecord:
    """Change the starred and intermediate flags."""
    _record(invoker, image_name)
    record: ImageRecord = invoker.services.image_records.update(
        image_name, starred=changes.starred, is_intermediate=changes.is_intermediate
    )
    return record


@router.delete("/i/{image_name}", status_code=204, response_class=Response, summary="Delete an image")
def delete_image(invoker: InvokerDep, image_name: ImageName) -> Response:
    """Delete the record, then the file and its thumbnail."""
    _record(invoker, image_name)
    invoker.services.image_service.delete(image_name)
    return Response(status_code=204)

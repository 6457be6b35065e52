"""How image nodes read their inputs and store their results: always through `context.images`.

A node never opens an image by path: the image service may be a local folder, S3 or anything a
plugin provides, and it records which session and node made each image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invokeai_nodes.image_outputs import ImageOutput

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import ImageField, ImageRecord, InvocationContext


class ImageNotFoundError(LookupError):
    """An `ImageField` names an image the image service does not have."""


def _missing(context: InvocationContext, image: ImageField, field: str) -> ImageNotFoundError:
    return ImageNotFoundError(
        f"{context.invocation_type}: input '{field}' names image '{image.image_name}', which does not exist"
    )


def image_record(context: InvocationContext, image: ImageField, field: str) -> ImageRecord:
    """The record (name, size, mode) of an input image, without loading its pixels."""
    try:
        return context.images.get_record(image)
    except KeyError:
        raise _missing(context, image, field) from None


def load_image(context: InvocationContext, image: ImageField, field: str) -> Image:
    """The pixels of an input image, or an error that names the input and the missing image."""
    try:
        return context.images.load(image)
    except KeyError:
        raise _missing(context, image, field) from None


def image_output(
    context: InvocationContext,
    image: Image,
    *,
    is_intermediate: bool = True,
    metadata: dict[str, Any] | None = None,
) -> ImageOutput:
    """Store `image` through the image service and describe it as an `ImageOutput`.

    Everything a node produces is intermediate (a gallery hides it) unless it is a final output,
    which only the `save_image` node declares.
    """
    record = context.images.save(image, is_intermediate=is_intermediate, metadata=metadata)
    return ImageOutput(image=record.field, width=record.width, height=record.height)

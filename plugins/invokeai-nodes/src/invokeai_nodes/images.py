"""Image geometry: make a blank image, resize, scale, crop and paste.

Every image is read and written through `context.images` (see `image_io`); Pillow is imported inside
`invoke()`, so registering these nodes costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import ValidationInfo, model_validator

from invokeai_core import BaseInvocation, ImageField, InputField, invocation
from invokeai_nodes.fields import ColorField
from invokeai_nodes.image_io import image_output, image_record, load_image
from invokeai_nodes.image_outputs import ImageOutput
from invokeai_nodes.limits import check_pixels
from invokeai_nodes.pil import MAX_SIZE, ResampleMode, check_size, editable, has_alpha, resample_filter
from invokeai_nodes.validation import InvalidInputError, check_when_built

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import InvocationContext

_RESAMPLE_DESCRIPTION = "The resampling filter (nearest is blocky and fast, lanczos is the sharpest)"


@invocation("blank_image", title="Blank Image", tags=["image", "new"], category="images", version="1.0.0")
class BlankImageInvocation(BaseInvocation):
    """Creates an image filled with one color (e.g. a canvas to paste onto, or a mask)."""

    width: int = InputField(default=512, ge=1, le=MAX_SIZE, description="The width in pixels")
    height: int = InputField(default=512, ge=1, le=MAX_SIZE, description="The height in pixels")
    mode: Literal["RGB", "RGBA", "L", "LA"] = InputField(
        default="RGB", description="The image mode: RGB, RGBA (with alpha), L (grayscale) or LA (grayscale + alpha)"
    )
    color: ColorField = InputField(
        default=ColorField(r=0, g=0, b=0, a=255),
        description="The fill color (gray for L/LA modes; alpha only for RGBA/LA)",
    )

    @model_validator(mode="after")
    def _check_pixels(self, info: ValidationInfo) -> Self:
        check_when_built(
            self,
            info,
            lambda: check_pixels("blank_image", "height", self.width, self.height),
            needs=("width", "height"),
        )
        return self

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import Image as PILImage

        check_pixels("blank_image", "height", self.width, self.height, context)

        image = PILImage.new("RGBA", (self.width, self.height), self.color.as_tuple())
        return image_output(context, image if self.mode == "RGBA" else image.convert(self.mode))


@invocation("img_resize", title="Resize Image", tags=["image", "resize"], category="images", version="1.0.0")
class ImageResizeInvocation(BaseInvocation):
    """Resizes an image to an exact width and height (the aspect ratio may change)."""

    image: ImageField = InputField(description="The image to resize")
    width: int = InputField(default=512, ge=1, le=MAX_SIZE, description="The new width in pixels")
    height: int = InputField(default=512, ge=1, le=MAX_SIZE, description="The new height in pixels")
    resample_mode: ResampleMode = InputField(default="bicubic", description=_RESAMPLE_DESCRIPTION)

    @model_validator(mode="after")
    def _check_pixels(self, info: ValidationInfo) -> Self:
        check_when_built(
            self, info, lambda: check_pixels("img_resize", "height", self.width, self.height), needs=("width", "height")
        )
        return self

    def invoke(self, context: InvocationContext) -> ImageOutput:
        check_pixels("img_resize", "height", self.width, self.height, context)
        image = load_image(context, self.image, "image")
        resized = image.resize((self.width, self.height), resample=resample_filter(self.resample_mode))
        return image_output(context, resized)


@invocation("img_scale", title="Scale Image", tags=["image", "scale", "resize"], category="images", version="1.0.0")
class ImageScaleInvocation(BaseInvocation):
    """Scales an image by a factor, keeping its aspect ratio (sizes are rounded down)."""

    image: ImageField = InputField(description="The image to scale")
    scale_factor: float = InputField(default=2.0, gt=0, le=64, description="The factor (0.5 halves, 2 doubles)")
    resample_mode: ResampleMode = InputField(default="bicubic", description=_RESAMPLE_DESCRIPTION)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = load_image(context, self.image, "image")
        width, height = int(image.width * self.scale_factor), int(image.height * self.scale_factor)
        check_size("img_scale", "scale_factor", width, height, context)
        return image_output(context, image.resize((width, height), resample=resample_filter(self.resample_mode)))


@invocation("img_crop", title="Crop Image", tags=["image", "crop"], category="images", version="1.0.0")
class ImageCropInvocation(BaseInvocation):
    """Cuts a rectangle out of an image. The rectangle must lie inside the image."""

    image: ImageField = InputField(description="The image to crop")
    x: int = InputField(default=0, ge=0, description="The left edge of the rectangle, in pixels from the left")
    y: int = InputField(default=0, ge=0, description="The top edge of the rectangle, in pixels from the top")
    width: int = InputField(default=512, ge=1, le=MAX_SIZE, description="The width of the rectangle")
    height: int = InputField(default=512, ge=1, le=MAX_SIZE, description="The height of the rectangle")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        record = image_record(context, self.image, "image")
        self._check_inside(record.width, record.height)  # before loading any pixels
        image = load_image(context, self.image, "image")
        return image_output(context, image.crop((self.x, self.y, self.x + self.width, self.y + self.height)))

    def _check_inside(self, width: int, height: int) -> None:
        size = f"the {width}x{height} image"
        if self.x >= width:
            raise InvalidInputError("img_crop", "x", f"x={self.x} is outside {size}")
        if self.y >= height:
            raise InvalidInputError("img_crop", "y", f"y={self.y} is outside {size}")
        if self.x + self.width > width:
            raise InvalidInputError(
                "img_crop",
                "width",
                f"x + width = {self.x + self.width} is past the right edge of {size} (at most {width - self.x} fits)",
            )
        if self.y + self.height > height:
            raise InvalidInputError(
                "img_crop",
                "height",
                f"y + height = {self.y + self.height} is past the bottom edge of {size} "
                f"(at most {height - self.y} fits)",
            )


@invocation("img_paste", title="Paste Image", tags=["image", "paste", "composite"], category="images", version="1.0.0")
class ImagePasteInvocation(BaseInvocation):
    """Pastes an image onto a base image at a position, optionally through a mask.

    Where the mask is white the pasted image shows, where it is black the base stays (gray blends).
    Without a mask, the pasted image's own alpha channel is the mask. The result grows to hold both
    images (new area transparent) unless `crop` keeps it at the base's size.
    """

    base_image: ImageField = InputField(description="The image to paste onto")
    image: ImageField = InputField(description="The image to paste")
    mask: ImageField | None = InputField(
        default=None, description="Optional mask, the size of image: white pastes, black keeps the base"
    )
    x: int = InputField(default=0, description="Where the pasted image's left edge goes (may be negative)")
    y: int = InputField(default=0, description="Where the pasted image's top edge goes (may be negative)")
    crop: bool = InputField(default=False, description="Keep the result at the base image's size")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import Image as PILImage

        base = editable(load_image(context, self.base_image, "base_image"))
        image = editable(load_image(context, self.image, "image"))
        mask = self._mask(context, image)
        if self.crop:
            left, top, right, bottom = 0, 0, base.width, base.height
        else:
            left, top = min(0, self.x), min(0, self.y)
            right, bottom = max(base.width, self.x + image.width), max(base.height, self.y + image.height)
        check_size("img_paste", "x", right - left, bottom - top, context)
        grows = (left, top, right, bottom) != (0, 0, base.width, base.height)
        mode = _result_mode(base, image, alpha=grows or has_alpha(base) or has_alpha(image))
        canvas = PILImage.new(mode, (right - left, bottom - top))  # zeros: transparent where it grew
        canvas.paste(base.convert(mode), (-left, -top))
        canvas.paste(image.convert(mode), (self.x - left, self.y - top), mask)
        return image_output(context, canvas)

    def _mask(self, context: InvocationContext, image: Image) -> Image | None:
        if self.mask is None:
            return image.convert("RGBA").getchannel("A") if has_alpha(image) else None
        mask = load_image(context, self.mask, "mask")
        if mask.size != image.size:
            raise InvalidInputError(
                "img_paste", "mask", f"the mask is {mask.width}x{mask.height}, the image {image.width}x{image.height}"
            )
        return editable(mask).convert("L")


def _result_mode(*images: Image, alpha: bool) -> str:
    """RGB(A) if any image has color, else L(A): pasting never drops color or transparency."""
    color = any("R" in im.getbands() for im in images)
    return ("RGBA" if alpha else "RGB") if color else ("LA" if alpha else "L")


NODES: list[type[BaseInvocation]] = [
    BlankImageInvocation,
    ImageResizeInvocation,
    ImageScaleInvocation,
    ImageCropInvocation,
    ImagePasteInvocation,
]

"""Pixel filters: blur, multiply, invert, and the linear maps `img_lerp` / `img_ilerp`.

Palette, 1-bit and 16-bit images are first expanded to 8-bit L, LA, RGB or RGBA (`pil.editable`), the
modes these filters are defined on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Self

from pydantic import ValidationInfo, model_validator

from invokeai_core import BaseInvocation, ImageField, InputField, invocation
from invokeai_nodes.image_io import image_output, load_image
from invokeai_nodes.image_outputs import ImageOutput
from invokeai_nodes.pil import editable
from invokeai_nodes.validation import InvalidInputError, check_when_built

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import InvocationContext


@invocation("img_blur", title="Blur Image", tags=["image", "blur", "filter"], category="images", version="1.0.0")
class ImageBlurInvocation(BaseInvocation):
    """Blurs an image with a gaussian or a box filter."""

    image: ImageField = InputField(description="The image to blur")
    radius: float = InputField(default=8.0, ge=0, le=1024, description="The blur radius in pixels (0: unchanged)")
    blur_type: Literal["gaussian", "box"] = InputField(
        default="gaussian", description="gaussian (smooth) or box (the average of a square, faster)"
    )

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import ImageFilter

        image = editable(load_image(context, self.image, "image"))
        blur = (
            ImageFilter.GaussianBlur(self.radius) if self.blur_type == "gaussian" else ImageFilter.BoxBlur(self.radius)
        )
        return image_output(context, image.filter(blur))


@invocation("img_mul", title="Multiply Images", tags=["image", "multiply"], category="images", version="1.0.0")
class ImageMultiplyInvocation(BaseInvocation):
    """Multiplies two images of the same size pixel by pixel (white keeps, black blacks out): the
    result is image1 darkened by image2. image2 is converted to image1's mode first."""

    image1: ImageField = InputField(description="The first image (its mode is the result's)")
    image2: ImageField = InputField(description="The second image, the same size as the first")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import ImageChops

        first = editable(load_image(context, self.image1, "image1"))
        second = editable(load_image(context, self.image2, "image2"))
        if first.size != second.size:
            raise InvalidInputError(
                "img_mul",
                "image2",
                f"the images differ in size ({first.width}x{first.height} and {second.width}x{second.height})",
            )
        return image_output(context, ImageChops.multiply(first, second.convert(first.mode)))


def _apply_to_channels(image: Image, table: list[int]) -> Image:
    """Map each 8-bit value of every channel (alpha included) through `table` (256 entries)."""
    return image.point(table * len(image.getbands()))


@invocation("img_lerp", title="Lerp Image", tags=["image", "lerp", "levels"], category="images", version="1.0.0")
class ImageLerpInvocation(BaseInvocation):
    """Maps every channel's 0..255 range linearly onto min..max (e.g. min=64 lifts the blacks).

    The inverse of `img_ilerp`. With min > max the image is inverted along the way.
    """

    image: ImageField = InputField(description="The image")
    min: int = InputField(default=0, ge=0, le=255, description="What 0 becomes")
    max: int = InputField(default=255, ge=0, le=255, description="What 255 becomes")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = editable(load_image(context, self.image, "image"))
        table = [round(self.min + v * (self.max - self.min) / 255) for v in range(256)]
        return image_output(context, _apply_to_channels(image, table))


@invocation(
    "img_ilerp", title="Inverse Lerp Image", tags=["image", "lerp", "levels"], category="images", version="1.0.0"
)
class ImageInverseLerpInvocation(BaseInvocation):
    """Stretches every channel's min..max range to 0..255 (values outside are clipped), e.g. to raise
    the contrast of a dull image. The inverse of `img_lerp`."""

    image: ImageField = InputField(description="The image")
    min: int = InputField(default=0, ge=0, le=255, description="The value that becomes 0")
    max: int = InputField(default=255, ge=0, le=255, description="The value that becomes 255 (greater than min)")

    @model_validator(mode="after")
    def _check_range(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("min", "max"))
        return self

    def _check(self) -> None:
        if self.max <= self.min:
            raise InvalidInputError("img_ilerp", "max", f"must be greater than min ({self.min}), got {self.max}")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        self._check()
        image = editable(load_image(context, self.image, "image"))
        span = self.max - self.min
        table = [max(0, min(255, round((v - self.min) * 255 / span))) for v in range(256)]
        return image_output(context, _apply_to_channels(image, table))


@invocation("img_invert", title="Invert Image", tags=["image", "invert"], category="images", version="1.0.0")
class ImageInvertInvocation(BaseInvocation):
    """Inverts the colors of an image (a negative); transparency is kept as it is."""

    image: ImageField = InputField(description="The image to invert")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import Image as PILImage
        from PIL import ImageOps

        image = editable(load_image(context, self.image, "image"))
        bands = list(image.split())
        for i, name in enumerate(image.getbands()):
            if name != "A":
                bands[i] = ImageOps.invert(bands[i])
        return image_output(context, PILImage.merge(image.mode, bands))


NODES: list[type[BaseInvocation]] = [
    ImageBlurInvocation,
    ImageMultiplyInvocation,
    ImageLerpInvocation,
    ImageInverseLerpInvocation,
    ImageInvertInvocation,
]

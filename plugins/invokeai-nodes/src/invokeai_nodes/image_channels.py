"""Modes and channels: convert an image's mode, extract a channel, make a mask from alpha, and
offset one channel of a color space (hue shift, saturation, ...)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from invokeai_core import BaseInvocation, ImageField, InputField, invocation
from invokeai_nodes.image_io import image_output, load_image
from invokeai_nodes.image_outputs import ImageOutput
from invokeai_nodes.pil import editable, has_alpha

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import InvocationContext


@invocation(
    "img_conv", title="Convert Image Mode", tags=["image", "convert", "mode"], category="images", version="1.0.0"
)
class ImageConvertInvocation(BaseInvocation):
    """Converts an image to another mode (e.g. RGB to grayscale L, or adding an alpha channel).

    Only modes that the image service stores as they are: CMYK, HSV, LAB or YCbCr images would come
    back as RGB, so they are refused (`img_channel_offset` works in those spaces).
    """

    image: ImageField = InputField(description="The image to convert")
    mode: Literal["L", "LA", "RGB", "RGBA", "P", "1"] = InputField(
        default="L",
        description="The new mode: L (grayscale), LA (grayscale + alpha), RGB, RGBA, P (256-color palette), "
        "1 (black and white, dithered)",
    )

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import Image as PILImage

        image = editable(load_image(context, self.image, "image"))
        if self.mode == "P":
            # An adaptive palette fits the image's own colors (Pillow's default is a fixed web palette).
            converted = (
                image.convert("RGBA").quantize(256, method=PILImage.Quantize.FASTOCTREE)
                if has_alpha(image)
                else image.convert("RGB").quantize(256)
            )
        else:
            converted = image.convert(self.mode)
        return image_output(context, converted)


@invocation("img_chan", title="Extract Image Channel", tags=["image", "channel"], category="images", version="1.0.0")
class ImageChannelInvocation(BaseInvocation):
    """Extracts one channel of an image as a grayscale (L) image, e.g. the alpha channel as a mask.

    The image is read as RGBA: a grayscale image has R = G = B, and an image without alpha has A = 255.
    """

    image: ImageField = InputField(description="The image")
    channel: Literal["R", "G", "B", "A"] = InputField(default="A", description="The channel: R, G, B or A (alpha)")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        image = editable(load_image(context, self.image, "image"))
        return image_output(context, image.convert("RGBA").getchannel(self.channel))


@invocation(
    "mask_from_alpha", title="Mask from Alpha", tags=["image", "mask", "alpha"], category="images", version="1.0.0"
)
class MaskFromAlphaInvocation(BaseInvocation):
    """Makes a grayscale (L) mask from an image's alpha channel: opaque is white, transparent black.

    An image without alpha is fully opaque, so its mask is all white (all black with invert).
    """

    image: ImageField = InputField(description="The image whose alpha channel becomes the mask")
    invert: bool = InputField(default=False, description="Make transparent white and opaque black instead")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import ImageOps

        mask = editable(load_image(context, self.image, "image")).convert("RGBA").getchannel("A")
        return image_output(context, ImageOps.invert(mask) if self.invert else mask)


#: Channel id -> (the Pillow mode it lives in, the band's name in that mode), and a label for UIs.
CHANNELS: dict[str, tuple[str, str, str]] = {
    "red": ("RGBA", "R", "Red (RGBA)"),
    "green": ("RGBA", "G", "Green (RGBA)"),
    "blue": ("RGBA", "B", "Blue (RGBA)"),
    "alpha": ("RGBA", "A", "Alpha (RGBA)"),
    "cyan": ("CMYK", "C", "Cyan (CMYK)"),
    "magenta": ("CMYK", "M", "Magenta (CMYK)"),
    "yellow": ("CMYK", "Y", "Yellow (CMYK)"),
    "black": ("CMYK", "K", "Black (CMYK)"),
    "hue": ("HSV", "H", "Hue (HSV)"),
    "saturation": ("HSV", "S", "Saturation (HSV)"),
    "value": ("HSV", "V", "Value (HSV)"),
    "lab_l": ("LAB", "L", "Luminosity (LAB)"),
    "lab_a": ("LAB", "A", "A (LAB)"),
    "lab_b": ("LAB", "B", "B (LAB)"),
    "luma": ("YCbCr", "Y", "Y (YCbCr)"),
    "chroma_blue": ("YCbCr", "Cb", "Cb (YCbCr)"),
    "chroma_red": ("YCbCr", "Cr", "Cr (YCbCr)"),
}

ChannelName = Literal[
    "red",
    "green",
    "blue",
    "alpha",
    "cyan",
    "magenta",
    "yellow",
    "black",
    "hue",
    "saturation",
    "value",
    "lab_l",
    "lab_a",
    "lab_b",
    "luma",
    "chroma_blue",
    "chroma_red",
]


@invocation(
    "img_channel_offset",
    title="Offset Image Channel",
    tags=["image", "channel", "hue", "color"],
    category="images",
    version="1.0.0",
)
class ImageChannelOffsetInvocation(BaseInvocation):
    """Adds a value to one channel of a color space: shift the hue, raise the saturation, dim the
    value, ... Values are clipped to 0..255, except hue, which wraps around the color wheel.

    The result is RGB, or RGBA when the image has alpha (which is kept) or the channel is alpha.
    """

    image: ImageField = InputField(description="The image to adjust")
    channel: ChannelName = InputField(
        default="hue",
        description="The channel to offset",
        ui_choice_labels={name: label for name, (_, _, label) in CHANNELS.items()},
    )
    offset: int = InputField(default=0, ge=-255, le=255, description="The value to add, -255..255")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import Image as PILImage

        image = editable(load_image(context, self.image, "image"))
        space, band, _ = CHANNELS[self.channel]
        alpha = image.convert("RGBA").getchannel("A") if has_alpha(image) else None
        converted = image.convert("RGBA") if space == "RGBA" else image.convert("RGB").convert(space)
        bands = list(converted.split())
        index = converted.getbands().index(band)
        bands[index] = bands[index].point(_offset_table(self.offset, wrap=self.channel == "hue"))
        result: Image = PILImage.merge(space, bands)
        if space != "RGBA":
            result = result.convert("RGB")
            if alpha is not None:
                result.putalpha(alpha)
        elif alpha is None and band != "A":
            result = result.convert("RGB")
        return image_output(context, result)


def _offset_table(offset: int, *, wrap: bool) -> list[int]:
    if wrap:
        return [(v + offset) % 256 for v in range(256)]
    return [max(0, min(255, v + offset)) for v in range(256)]


NODES: list[type[BaseInvocation]] = [
    ImageConvertInvocation,
    ImageChannelInvocation,
    MaskFromAlphaInvocation,
    ImageChannelOffsetInvocation,
]

"""Small Pillow helpers shared by the image nodes.

Pillow is imported inside each function, never at module import: listing or validating nodes must
not pay for it (a test asserts that `import invokeai_nodes.hooks` plus registering every node leaves
`PIL` unimported).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import InvocationContext

#: Resampling filters, from fastest to best quality for downscaling.
ResampleMode = Literal["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]

#: Modes that the image service stores as they are (PNG). Others are converted on the way in.
STORABLE_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})

#: The largest width or height an image node will create, so a typo cannot exhaust memory.
MAX_SIZE = 16384


def resample_filter(name: ResampleMode) -> int:
    """The Pillow constant for a resampling filter name."""
    from PIL import Image as PILImage

    return int(PILImage.Resampling[name.upper()])


def has_alpha(image: Image) -> bool:
    """Whether `image` has transparency (an alpha band, or a palette with a transparent entry)."""
    return "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info)


def storable(image: Image) -> Image:
    """`image` in a mode the image service keeps as is (CMYK, float, ... become RGB or RGBA)."""
    if image.mode in STORABLE_MODES:
        return image
    return image.convert("RGBA" if has_alpha(image) else "RGB")


def editable(image: Image) -> Image:
    """`image` in an 8-bit-per-channel mode that filters and channel arithmetic accept.

    Palette and 1-bit images are expanded (a palette with transparency becomes RGBA), 16-bit
    grayscale becomes 8-bit L; L, LA, RGB and RGBA are returned unchanged.
    """
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode in ("I;16", "I"):
        return image.convert("I").point(lambda v: v / 257).convert("L")  # 0..65535 -> 0..255
    return image.convert("RGBA" if has_alpha(image) else "RGB")


def check_size(node: str, field: str, width: int, height: int, context: InvocationContext) -> None:
    """Refuse a computed size that is empty, larger than `MAX_SIZE` on a side, or more pixels than
    `limits.image_pixels` (a node error naming the input that chose it)."""
    from invokeai_nodes.limits import check_pixels

    if not (1 <= width <= MAX_SIZE and 1 <= height <= MAX_SIZE):
        raise ValueError(f"{node}: the result would be {width}x{height} pixels; each side must be 1..{MAX_SIZE}")
    check_pixels(node, field, width, height, context)

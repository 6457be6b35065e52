"""ControlNet and T2I-Adapter nodes, and the control-image nodes that feed them.

`controlnet` and `t2i_adapter` only name an installed model with its control image and settings
(a `ControlField` / `T2IAdapterField`); nothing loads until `denoise_latents` runs them through
diffusers' own ControlNet / Adapter pipelines (see `nodes/denoise.py`). Several `controlnet` nodes
gathered by a `collect` node give diffusers' MultiControlNet, several `t2i_adapter` nodes its
MultiAdapter.

Resize modes (InvokeAI's names), how a control image of another size is fitted to the generated
width x height:

* `just_resize`: stretched to exactly width x height (the aspect ratio may change), with Lanczos,
  which is what the diffusers pipelines do themselves to a control image of another size;
* `crop_resize`: scaled (Lanczos) to cover width x height with its aspect kept, then the overflow
  is cropped equally from both sides (centred);
* `fill_resize`: scaled (Lanczos) to fit inside width x height with its aspect kept, then padded
  with black equally on both sides (centred).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    InputField,
    InvocationContext,
    InvokeAIError,
    NodeFieldError,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import ControlField, ControlResizeMode, T2IAdapterField
from invokeai_diffusers.nodes.common import DiffusionNodeError, ImageOutput, not_a, record, save_image

if TYPE_CHECKING:
    from invokeai_core import Services
    from invokeai_diffusers.models.records import ModelRecord


def check_control_model(found: ModelRecord, kind: str, field: str) -> None:
    """`found` is an installed model of type `kind` (controlnet or t2i_adapter)."""
    if found.type != kind:
        wanted = "a ControlNet" if kind == "controlnet" else "a T2I-Adapter"
        raise DiffusionNodeError(field, not_a(found, wanted))


def _preflight(node: BaseInvocation, services: Services, name: str, kind: str, field: str) -> None:
    from invokeai_diffusers.models.manager import ModelManager

    try:
        check_control_model(services.get(ModelManager).get(name), kind, field)
    except DiffusionNodeError as e:
        raise NodeFieldError(e.reason, node.id, field) from None
    except InvokeAIError as e:
        raise NodeFieldError(str(e), node.id, field) from None


@invocation_output("control_output")
class ControlOutput(BaseInvocationOutput):
    """A ControlNet with its image, for denoise_latents' `control`."""

    control: ControlField = OutputField(description="The ControlNet and its settings")


@invocation("controlnet", title="ControlNet", tags=["controlnet", "control"], category="controlnet", version="1.0.0")
class ControlNetInvocation(BaseInvocation):
    """Guides denoise_latents with an installed ControlNet and a control image (collect several for
    MultiControlNet). The weight and the step range are the ControlNet pipelines' own arguments."""

    image: ImageField = InputField(description="The control image (e.g. from canny_edge)")
    control_model: str = InputField(
        description="The installed ControlNet's name", ui_type="model", ui_model_type="controlnet"
    )
    control_weight: float = InputField(
        default=1.0, ge=-1, le=2, description="How strongly it guides (controlnet_conditioning_scale)"
    )
    begin_step_percent: float = InputField(
        default=0.0, ge=0, le=1, description="When it starts, as a fraction of the steps (control_guidance_start)"
    )
    end_step_percent: float = InputField(
        default=1.0, ge=0, le=1, description="When it stops, as a fraction of the steps (control_guidance_end)"
    )
    resize_mode: ControlResizeMode = InputField(
        default="just_resize", description="How the image is fitted to the output size"
    )

    def preflight(self, services: Services) -> None:
        _preflight(self, services, self.control_model, "controlnet", "control_model")
        if self.begin_step_percent >= self.end_step_percent:
            raise NodeFieldError(
                f"{self.begin_step_percent} is not before end_step_percent ({self.end_step_percent})",
                self.id,
                "begin_step_percent",
            )

    def invoke(self, context: InvocationContext) -> ControlOutput:
        check_control_model(record(context, self.control_model, "control_model"), "controlnet", "control_model")
        return ControlOutput(
            control=ControlField(
                image=self.image,
                control_model=self.control_model,
                control_weight=self.control_weight,
                begin_step_percent=self.begin_step_percent,
                end_step_percent=self.end_step_percent,
                resize_mode=self.resize_mode,
            )
        )


@invocation_output("t2i_adapter_output")
class T2IAdapterOutput(BaseInvocationOutput):
    """A T2I-Adapter with its image, for denoise_latents' `t2i_adapter`."""

    t2i_adapter: T2IAdapterField = OutputField(description="The T2I-Adapter and its settings")


@invocation("t2i_adapter", title="T2I-Adapter", tags=["t2i_adapter", "control"], category="controlnet", version="1.0.0")
class T2IAdapterInvocation(BaseInvocation):
    """Guides denoise_latents with an installed T2I-Adapter and a control image (collect several for
    MultiAdapter). `adapter_conditioning_factor` exists in diffusers' SDXL adapter pipeline only: an
    SD 1.x/2.x graph must leave it at 1."""

    image: ImageField = InputField(description="The control image")
    t2i_adapter_model: str = InputField(
        description="The installed T2I-Adapter's name", ui_type="model", ui_model_type="t2i_adapter"
    )
    weight: float = InputField(
        default=1.0, ge=-1, le=2, description="How strongly it guides (adapter_conditioning_scale)"
    )
    adapter_conditioning_factor: float = InputField(
        default=1.0, ge=0, le=1, description="The fraction of the steps, from the first, it is applied for (SDXL)"
    )
    resize_mode: ControlResizeMode = InputField(
        default="just_resize", description="How the image is fitted to the output size"
    )

    def preflight(self, services: Services) -> None:
        _preflight(self, services, self.t2i_adapter_model, "t2i_adapter", "t2i_adapter_model")

    def invoke(self, context: InvocationContext) -> T2IAdapterOutput:
        found = record(context, self.t2i_adapter_model, "t2i_adapter_model")
        check_control_model(found, "t2i_adapter", "t2i_adapter_model")
        return T2IAdapterOutput(
            t2i_adapter=T2IAdapterField(
                image=self.image,
                t2i_adapter_model=self.t2i_adapter_model,
                weight=self.weight,
                adapter_conditioning_factor=self.adapter_conditioning_factor,
                resize_mode=self.resize_mode,
            )
        )


# -- control images --------------------------------------------------------------------------------
def fit_image(image: Any, width: int, height: int, mode: str) -> Any:
    """`image` (PIL) fitted to width x height by a resize mode (see the module docstring)."""
    from PIL import Image

    if image.size == (width, height):
        return image.copy()
    if mode == "just_resize":
        return image.resize((width, height), resample=Image.Resampling.LANCZOS)
    scale_x, scale_y = width / image.width, height / image.height
    scale = max(scale_x, scale_y) if mode == "crop_resize" else min(scale_x, scale_y)
    inner = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    scaled = image.resize(inner, resample=Image.Resampling.LANCZOS)
    if mode == "crop_resize":
        left, top = (inner[0] - width) // 2, (inner[1] - height) // 2
        return scaled.crop((left, top, left + width, top + height))
    canvas = Image.new(image.mode, (width, height))  # black
    canvas.paste(scaled, ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return canvas


@invocation(
    "image_resize_for_control",
    title="Resize for Control",
    tags=["image", "controlnet", "resize"],
    category="controlnet",
    version="1.0.0",
)
class ImageResizeForControlInvocation(BaseInvocation):
    """Fits an image to width x height by a control resize mode (just_resize, crop_resize,
    fill_resize: the ones `controlnet` and `t2i_adapter` apply themselves), to see or reuse the
    image a ControlNet will be given."""

    image: ImageField = InputField(description="The image")
    width: int = InputField(default=512, gt=0, multiple_of=8, description="The target width")
    height: int = InputField(default=512, gt=0, multiple_of=8, description="The target height")
    resize_mode: ControlResizeMode = InputField(default="just_resize", description="How the image is fitted")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        pil = context.images.load(self.image)
        out = fit_image(pil, self.width, self.height, self.resize_mode)
        return save_image(context, out, {"resize_mode": self.resize_mode}, gallery=False)


def canny(gray: Any, low: int, high: int) -> Any:
    """Canny edges of a 2-D uint8 array, as a bool array (what OpenCV's `cv2.Canny(img, low, high)`
    computes with its defaults: no pre-blur, 3x3 Sobel, L1 gradient magnitude |gx| + |gy|).

    numpy + scipy, no OpenCV (not installed here, and a large binary for one filter): scipy.ndimage
    gives the Sobel filters (replicated borders, like OpenCV's Canny) and the 8-connected labelling
    for hysteresis. Steps: gradients; non-maximum suppression along the gradient direction rounded to
    0/45/90/135 degrees (a pixel stays if it is >= both neighbours across the edge); then hysteresis:
    pixels above `high` are edges, and pixels above `low` are edges when 8-connected to one.
    Everything is integer or exact-float arithmetic, so the output is deterministic."""
    import numpy as np
    from scipy import ndimage

    img = gray.astype(np.float64)
    gx = ndimage.sobel(img, axis=1, mode="nearest")
    gy = ndimage.sobel(img, axis=0, mode="nearest")
    mag = np.abs(gx) + np.abs(gy)
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = (np.floor((angle + 22.5) / 45.0).astype(int)) % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    padded = np.pad(mag, 1, mode="constant")
    h, w = mag.shape

    def shifted(dy: int, dx: int) -> Any:
        return padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    # neighbours across the edge for each sector (image y grows downwards; gy > 0 points down)
    offsets = {0: ((0, 1), (0, -1)), 1: ((1, 1), (-1, -1)), 2: ((1, 0), (-1, 0)), 3: ((1, -1), (-1, 1))}
    keep = np.zeros(mag.shape, dtype=bool)
    for s, (a, b) in offsets.items():
        here = sector == s
        keep |= here & (mag >= shifted(*a)) & (mag >= shifted(*b))
    thin = np.where(keep, mag, 0.0)
    strong = thin > high
    weak = thin > low
    labels, count = ndimage.label(weak, structure=np.ones((3, 3), dtype=int))
    if count == 0:
        return np.zeros(mag.shape, dtype=bool)
    connected = np.zeros(count + 1, dtype=bool)
    connected[np.unique(labels[strong])] = True
    connected[0] = False
    return connected[labels]


@invocation(
    "canny_edge", title="Canny Edges", tags=["controlnet", "canny", "image"], category="controlnet", version="1.0.0"
)
class CannyEdgeInvocation(BaseInvocation):
    """Canny edge map of an image (white edges on black, RGB), the control image canny ControlNets
    and T2I-Adapters expect. See `canny` for the algorithm (OpenCV's defaults, in numpy/scipy)."""

    image: ImageField = InputField(description="The image")
    low_threshold: int = InputField(default=100, ge=0, le=255 * 8, description="Edges below this are dropped")
    high_threshold: int = InputField(default=200, ge=0, le=255 * 8, description="Edges above this are kept")

    def preflight(self, services: Services) -> None:
        if self.low_threshold > self.high_threshold:
            raise NodeFieldError(
                f"{self.low_threshold} is above high_threshold ({self.high_threshold})", self.id, "low_threshold"
            )

    def invoke(self, context: InvocationContext) -> ImageOutput:
        import numpy as np
        from PIL import Image

        gray = np.asarray(context.images.load(self.image).convert("L"))
        edges = canny(gray, self.low_threshold, self.high_threshold)
        out = Image.fromarray(np.where(edges, 255, 0).astype(np.uint8)).convert("RGB")
        metadata = {"low_threshold": self.low_threshold, "high_threshold": self.high_threshold}
        return save_image(context, out, metadata, gallery=False)

"""The `upscale_image` node: an installed upscaler (spandrel) on an image, whole or in blended tiles."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import BaseInvocation, ImageField, InputField, InvocationContext, NodeFieldError, invocation
from invokeai_diffusers.nodes.common import (
    DiffusionNodeError,
    GenerationCanceled,
    ImageOutput,
    load,
    not_a,
    record,
    save_image,
)

if TYPE_CHECKING:
    from invokeai_core import Services
    from invokeai_diffusers.models.records import ModelRecord


def _not_an_upscaler(found: ModelRecord) -> str | None:
    return None if found.type == "upscaler" else not_a(found, "an upscaler")


@invocation("upscale_image", title="Upscale Image", tags=["image", "upscale"], category="image", version="1.0.0")
class UpscaleImageInvocation(BaseInvocation):
    """Upscales an image with an installed upscaler model (ESRGAN and the other spandrel architectures).

    `tile_size` 0 runs the whole image at once; otherwise tiles of that many pixels, overlapping by
    `tile_overlap`, are upscaled one by one and blended linearly across the overlaps (less memory
    for large images; not bit-equal to the untiled result near tile seams)."""

    image: ImageField = InputField(description="The image to upscale")
    model: str = InputField(
        description="The installed upscaler's name (see `invokeai models list`)",
        ui_type="model",
        ui_model_type="upscaler",
    )
    tile_size: int = InputField(default=0, ge=0, le=8192, description="Tile size in input pixels (0 = no tiling)")
    tile_overlap: int = InputField(default=16, ge=0, le=1024, description="Overlap between tiles in input pixels")
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")

    def preflight(self, services: Services) -> None:
        from invokeai_core import InvokeAIError
        from invokeai_diffusers.models.manager import ModelManager

        try:
            found = services.get(ModelManager).get(self.model)
        except InvokeAIError as e:
            raise NodeFieldError(str(e), self.id, "model") from None
        problem = _not_an_upscaler(found)
        if problem is not None:
            raise NodeFieldError(problem, self.id, "model")
        if self.tile_size and self.tile_overlap >= self.tile_size:
            raise NodeFieldError(
                f"{self.tile_overlap} must be smaller than tile_size ({self.tile_size})", self.id, "tile_overlap"
            )

    def invoke(self, context: InvocationContext) -> ImageOutput:
        import torch

        from invokeai_diffusers.upscale import UpscaleError, to_pil, to_tensor, upscale

        found = record(context, self.model, "model")
        problem = _not_an_upscaler(found)
        if problem is not None:
            raise DiffusionNodeError("model", problem)
        if self.tile_size and self.tile_overlap >= self.tile_size:
            raise DiffusionNodeError("tile_overlap", f"{self.tile_overlap} must be smaller than {self.tile_size}")
        descriptor = load(context, self.model, "upscaler", "model")
        channels = int(descriptor.input_channels)
        if channels not in (1, 3, 4):
            raise DiffusionNodeError("model", f"the upscaler takes {channels} channels (1, 3 or 4 are supported)")
        pil = context.images.load(self.image)
        param = next(descriptor.model.parameters())
        image = to_tensor(pil, channels).to(param.device, param.dtype)

        def on_tile(done: int, total: int) -> None:
            context.progress(done, total, message=f"upscaling tile {done}/{total}")
            if context.is_canceled():
                raise GenerationCanceled("canceled")

        try:
            with torch.inference_mode():
                out = upscale(
                    descriptor, image, tile_size=self.tile_size, tile_overlap=self.tile_overlap, on_tile=on_tile
                )
        except UpscaleError as e:
            raise DiffusionNodeError("model", str(e)) from None
        result = to_pil(out)
        meta = {"model": self.model, "scale": int(descriptor.scale), "source_image": self.image.image_name}
        meta |= {"tile_size": self.tile_size, "tile_overlap": self.tile_overlap}
        return save_image(context, result, meta, gallery=self.gallery)

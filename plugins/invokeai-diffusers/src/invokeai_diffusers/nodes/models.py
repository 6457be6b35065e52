"""Model loader nodes: a model name in, handles to its components out (nothing is loaded yet)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import CLIPField, UNetField, VAEField
from invokeai_diffusers.nodes.common import check_base, preflight_model, record

if TYPE_CHECKING:
    from invokeai_core import Services


@invocation_output("model_loader_output")
class ModelLoaderOutput(BaseInvocationOutput):
    """Handles to a Stable Diffusion 1.x/2.x model's components."""

    unet: UNetField = OutputField(description="The UNet (and scheduler config)")
    clip: CLIPField = OutputField(description="The text encoder and tokenizer")
    vae: VAEField = OutputField(description="The VAE")


@invocation_output("sdxl_model_loader_output")
class SDXLModelLoaderOutput(BaseInvocationOutput):
    """Handles to an SDXL model's components."""

    unet: UNetField = OutputField(description="The UNet (and scheduler config)")
    clip: CLIPField = OutputField(description="The first text encoder and tokenizer")
    clip2: CLIPField = OutputField(description="The second text encoder and tokenizer")
    vae: VAEField = OutputField(description="The VAE")


@invocation("main_model_loader", title="Main Model", tags=["model"], category="model", version="1.0.0")
class MainModelLoaderInvocation(BaseInvocation):
    """Selects an installed Stable Diffusion 1.x or 2.x model."""

    model: str = InputField(description="The installed model's name (see `invokeai models list`)", ui_type="model")

    def preflight(self, services: Services) -> None:
        preflight_model(self, services, base="sd")

    def invoke(self, context: InvocationContext) -> ModelLoaderOutput:
        found = record(context, self.model, "model")
        check_base(found, sdxl=False)
        return ModelLoaderOutput(
            unet=UNetField(model=found.name), clip=CLIPField(model=found.name), vae=VAEField(model=found.name)
        )


@invocation("sdxl_model_loader", title="SDXL Main Model", tags=["model", "sdxl"], category="model", version="1.0.0")
class SDXLModelLoaderInvocation(BaseInvocation):
    """Selects an installed SDXL model."""

    model: str = InputField(description="The installed SDXL model's name", ui_type="model")

    def preflight(self, services: Services) -> None:
        preflight_model(self, services, base="sdxl")

    def invoke(self, context: InvocationContext) -> SDXLModelLoaderOutput:
        found = record(context, self.model, "model")
        check_base(found, sdxl=True)
        return SDXLModelLoaderOutput(
            unet=UNetField(model=found.name),
            clip=CLIPField(model=found.name),
            clip2=CLIPField(model=found.name, text_encoder="text_encoder_2", tokenizer="tokenizer_2"),
            vae=VAEField(model=found.name),
        )

"""Entry point of invokeai-diffusers (group `invokeai.plugins`, name `diffusers`).

Deliberately light: torch, diffusers and transformers are imported only when a diffusion node runs
or a `models` command needs them, never when the plugin loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from invokeai_core import hookimpl

if TYPE_CHECKING:
    import click

    from invokeai_core import ServiceRegistrar


@hookimpl
def register_invocations(register: Callable[[Any], None]) -> None:
    from invokeai_diffusers.nodes import conditioning, control, convenience, latents, models

    for cls in (
        models.MainModelLoaderInvocation,
        models.SDXLModelLoaderInvocation,
        models.LoRALoaderInvocation,
        conditioning.PromptInvocation,
        latents.NoiseInvocation,
        latents.DenoiseLatentsInvocation,
        latents.LatentsToImageInvocation,
        latents.ImageToLatentsInvocation,
        latents.CreateDenoiseMaskInvocation,
        convenience.TextToImageInvocation,
        convenience.ImageToImageInvocation,
        convenience.InpaintInvocation,
        control.ControlNetInvocation,
        control.T2IAdapterInvocation,
        control.CannyEdgeInvocation,
        control.ImageResizeForControlInvocation,
    ):
        register(cls)
    from invokeai_diffusers.nodes import flux, sd3

    for flow_cls in (
        flux.FluxModelLoaderInvocation,
        flux.FluxTextEncoderInvocation,
        flux.FluxDenoiseInvocation,
        flux.FluxVaeDecodeInvocation,
        flux.FluxVaeEncodeInvocation,
        flux.FluxTextToImageInvocation,
        sd3.SD3ModelLoaderInvocation,
        sd3.SD3TextEncoderInvocation,
        sd3.SD3DenoiseInvocation,
        sd3.SD3VaeDecodeInvocation,
        sd3.SD3TextToImageInvocation,
    ):
        register(flow_cls)
    from invokeai_diffusers.nodes import ip_adapter, upscale

    register(upscale.UpscaleImageInvocation)
    register(ip_adapter.IPAdapterInvocation)


@hookimpl
def register_services(register: ServiceRegistrar) -> None:
    register(
        "models",
        "local",
        "invokeai_diffusers.models.manager:ModelManager",
        description="Models from local diffusers folders, with a model cache",
        install_hint="pip install invokeai-diffusers",
        default=True,
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    from invokeai_diffusers.cli import models_group

    cli.add_command(models_group)


@hookimpl(optionalhook=True)
def register_routes(app: Any) -> None:
    """invokeai-web's hook (absent without that plugin, hence optional): the `models` routes."""
    from invokeai_diffusers.routes import add_routes

    add_routes(app)

"""Granular generation nodes: noise, denoise_latents, latents_to_image, image_to_latents, create_denoise_mask."""

from __future__ import annotations

from typing import Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    Input,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import (
    ConditioningField,
    ControlField,
    DenoiseMaskField,
    IPAdapterField,
    LatentsField,
    T2IAdapterField,
    UNetField,
    VAEField,
)
from invokeai_diffusers.nodes.common import (
    DiffusionNodeError,
    ImageOutput,
    LatentsOutput,
    check_size,
    device_and_dtype,
    generator,
    load,
    load_object,
    save_image,
    store_latents,
)
from invokeai_diffusers.nodes.denoise import DenoiseRequest, denoise
from invokeai_diffusers.schedulers import SchedulerName


@invocation("noise", title="Noise", tags=["latents", "noise", "seed"], category="latents", version="1.0.0")
class NoiseInvocation(BaseInvocation):
    """Gaussian noise latents from a seed, drawn exactly as diffusers' pipelines draw them."""

    seed: int = InputField(default=0, ge=0, lt=2**32, description="The seed")
    width: int = InputField(default=512, gt=0, multiple_of=8, description="Image width in pixels")
    height: int = InputField(default=512, gt=0, multiple_of=8, description="Image height in pixels")

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        import torch

        check_size(self.width, self.height)
        shape = (1, 4, self.height // 8, self.width // 8)
        noise = torch.randn(shape, generator=generator(self.seed), dtype=torch.float32)
        return store_latents(context, noise, seed=self.seed, metadata={"seed": self.seed})


@invocation(
    "denoise_latents", title="Denoise Latents", tags=["latents", "denoise"], category="latents", version="1.0.0"
)
class DenoiseLatentsInvocation(BaseInvocation):
    """Denoises noise (text to image) or existing latents (image to image, optionally masked)."""

    unet: UNetField = InputField(description="The UNet (from a model loader)", input=Input.Connection)
    positive_conditioning: ConditioningField = InputField(description="The prompt", input=Input.Connection)
    negative_conditioning: ConditioningField | None = InputField(
        default=None, description="The negative prompt (default: empty)", input=Input.Connection
    )
    noise: LatentsField | None = InputField(
        default=None, description="Noise (its seed drives the sampler)", input=Input.Connection
    )
    latents: LatentsField | None = InputField(
        default=None, description="Latents to start from (image to image)", input=Input.Connection
    )
    denoise_mask: DenoiseMaskField | None = InputField(
        default=None, description="Only repaint where the mask is white", input=Input.Connection
    )
    steps: int = InputField(default=20, ge=1, le=1000, description="Denoising steps")
    cfg_scale: float = InputField(default=7.5, ge=0, le=100, description="Classifier-free guidance scale")
    scheduler: SchedulerName = InputField(default="default", description="The sampler ('default': the model's own)")
    strength: float = InputField(default=0.75, ge=0, le=1, description="How much to change the start latents")
    seed: int | None = InputField(default=None, ge=0, description="Seed override (default: the noise's seed)")
    ip_adapter: IPAdapterField | list[IPAdapterField] | None = InputField(
        default=None, description="IP-Adapter image prompts (from ip_adapter nodes)", input=Input.Connection
    )
    control: ControlField | list[ControlField] | None = InputField(
        default=None, description="ControlNets (from controlnet nodes; collect several)", input=Input.Connection
    )
    t2i_adapter: T2IAdapterField | list[T2IAdapterField] | None = InputField(
        default=None, description="T2I-Adapters (from t2i_adapter nodes; collect several)", input=Input.Connection
    )

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        from invokeai_diffusers.nodes.control_denoise import as_list

        request = DenoiseRequest(
            unet=self.unet,
            positive=self.positive_conditioning,
            negative=self.negative_conditioning,
            noise=self.noise,
            latents=self.latents,
            mask=self.denoise_mask,
            steps=self.steps,
            cfg_scale=self.cfg_scale,
            scheduler=self.scheduler,
            strength=self.strength,
            seed=self.seed,
            ip_adapters=as_list(self.ip_adapter),
            control=as_list(self.control),
            t2i_adapters=as_list(self.t2i_adapter),
        )
        latents = denoise(context, request)
        seed = self.seed if self.seed is not None else (self.noise.seed if self.noise is not None else None)
        metadata = {
            "model": self.unet.model,
            "seed": seed,
            "steps": self.steps,
            "cfg_scale": self.cfg_scale,
            "scheduler": self.scheduler,
            **({"strength": self.strength} if self.latents is not None else {}),
            **({"controlnets": [c.control_model for c in request.control]} if request.control else {}),
            **({"t2i_adapters": [a.t2i_adapter_model for a in request.t2i_adapters]} if request.t2i_adapters else {}),
        }
        return store_latents(context, latents, seed=seed, metadata=metadata)


@invocation("latents_to_image", title="Latents to Image", tags=["latents", "vae"], category="latents", version="1.0.0")
class LatentsToImageInvocation(BaseInvocation):
    """Decodes latents to an image with the VAE."""

    latents: LatentsField = InputField(description="The latents to decode", input=Input.Connection)
    vae: VAEField = InputField(description="The VAE (from a model loader)", input=Input.Connection)
    gallery: bool = InputField(default=True, description="Show the image in the gallery (not intermediate)")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        import torch
        from diffusers.image_processor import VaeImageProcessor

        vae = load(context, self.vae.model, "vae", "vae")
        latents = load_object(context, self.latents.latents_name, "latents")
        with torch.inference_mode():
            lat = latents.to(vae.device, vae.dtype)
            mean = getattr(vae.config, "latents_mean", None)
            std = getattr(vae.config, "latents_std", None)
            if mean is not None and std is not None:
                shape = (1, lat.shape[1], 1, 1)
                mean_t = torch.tensor(mean).view(shape).to(lat.device, lat.dtype)
                std_t = torch.tensor(std).view(shape).to(lat.device, lat.dtype)
                lat = lat * std_t / vae.config.scaling_factor + mean_t
            else:
                lat = lat / vae.config.scaling_factor
            decoded = vae.decode(lat, return_dict=False)[0]
            processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))
            image = processor.postprocess(decoded, output_type="pil", do_denormalize=[True])[0]
        metadata = {**(self.latents.metadata or {}), "vae": self.vae.model}
        return save_image(context, image, metadata, gallery=self.gallery)


@invocation("image_to_latents", title="Image to Latents", tags=["latents", "vae"], category="latents", version="1.0.0")
class ImageToLatentsInvocation(BaseInvocation):
    """Encodes an image to latents with the VAE (the distribution's mode, or a sample for a seed)."""

    image: ImageField = InputField(description="The image to encode")
    vae: VAEField = InputField(description="The VAE (from a model loader)", input=Input.Connection)
    seed: int | None = InputField(default=None, ge=0, description="Sample the latent distribution with this seed")

    def invoke(self, context: InvocationContext) -> LatentsOutput:
        import torch
        from diffusers.image_processor import VaeImageProcessor

        pil = context.images.load(self.image).convert("RGB")
        if pil.width % 8 or pil.height % 8:
            raise DiffusionNodeError(
                "image", f"the image is {pil.width}x{pil.height}; both sides must be multiples of 8"
            )
        vae = load(context, self.vae.model, "vae", "vae")
        processor = VaeImageProcessor(vae_scale_factor=2 ** (len(vae.config.block_out_channels) - 1))
        with torch.inference_mode():
            pixels = processor.preprocess(pil).to(vae.device, vae.dtype)
            dist = vae.encode(pixels).latent_dist
            latents = dist.sample(generator(self.seed)) if self.seed is not None else dist.mode()
            latents = latents * vae.config.scaling_factor
        _, dtype = device_and_dtype(context)
        # contiguous: the VAE's output strides are an artefact of its last convolution (see denoise)
        return store_latents(context, latents.to(dtype).contiguous(), metadata={"source_image": self.image.image_name})


@invocation_output("denoise_mask_output")
class DenoiseMaskOutput(BaseInvocationOutput):
    """A mask for denoise_latents."""

    denoise_mask: DenoiseMaskField = OutputField(description="The mask (white = repaint)")


@invocation(
    "create_denoise_mask", title="Create Denoise Mask", tags=["mask", "inpaint"], category="latents", version="1.0.0"
)
class CreateDenoiseMaskInvocation(BaseInvocation):
    """Turns a black-and-white mask image (white = repaint) into a mask at latent resolution."""

    mask: ImageField = InputField(description="The mask image (white = repaint, black = keep)")
    width: int = InputField(gt=0, multiple_of=8, description="The width of the image being inpainted")
    height: int = InputField(gt=0, multiple_of=8, description="The height of the image being inpainted")

    def invoke(self, context: InvocationContext) -> DenoiseMaskOutput:
        tensor = latent_mask(context.images.load(self.mask), self.width, self.height)
        return DenoiseMaskOutput(denoise_mask=DenoiseMaskField(mask_name=context.objects.save(tensor)))


def latent_mask(mask: Any, width: int, height: int) -> Any:
    """The inpaint pipeline's mask processing: grayscale, binarise, then resize to the latent grid."""
    import torch
    from diffusers.image_processor import VaeImageProcessor

    if mask.size != (width, height):
        raise DiffusionNodeError("mask", f"the mask is {mask.width}x{mask.height}, the image is {width}x{height}")
    processor = VaeImageProcessor(vae_scale_factor=8, do_normalize=False, do_binarize=True, do_convert_grayscale=True)
    pixels = processor.preprocess(mask, height=height, width=width)
    return torch.nn.functional.interpolate(pixels, size=(height // 8, width // 8))

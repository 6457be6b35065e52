"""Helpers shared by the diffusion nodes: model access with load events, generators, pipelines
assembled from cached components, progress/cancel callbacks, and image outputs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    EventServiceBase,
    ImageField,
    InvokeAIError,
    ModelLoadCompleteEvent,
    ModelLoadStartedEvent,
    ModelUnloadedEvent,
    NodeFieldError,
    OutputField,
    invocation_output,
)
from invokeai_diffusers.fields import LatentsField, LoRAField

if TYPE_CHECKING:
    from invokeai_core import InvocationContext, Services
    from invokeai_diffusers.models.manager import ModelManager
    from invokeai_diffusers.models.records import ModelRecord


class DiffusionNodeError(InvokeAIError):
    """A node input is unusable; the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"field '{field}': {reason}")


class GenerationCanceled(InvokeAIError):
    """The session was canceled between two denoising steps."""


@invocation_output("diffusers_image_output")
class ImageOutput(BaseInvocationOutput):
    """One image."""

    image: ImageField = OutputField(description="The image")
    width: int = OutputField(description="Width in pixels")
    height: int = OutputField(description="Height in pixels")


@invocation_output("latents_output")
class LatentsOutput(BaseInvocationOutput):
    """Latents and the pixel size they decode to."""

    latents: LatentsField = OutputField(description="The latents")
    width: int = OutputField(description="Width in pixels")
    height: int = OutputField(description="Height in pixels")


def models(context: InvocationContext) -> ModelManager:
    from invokeai_diffusers.models.manager import ModelManager

    return context.services.get(ModelManager)


def record(context: InvocationContext, name: str, field: str) -> ModelRecord:
    try:
        return models(context).get(name)
    except InvokeAIError as e:
        raise DiffusionNodeError(field, str(e)) from None


def preflight_model(node: BaseInvocation, services: Services, *, base: str | None = None) -> None:
    """`BaseInvocation.preflight` of the nodes with a `model` input: an unknown model name (one of
    another base when `base` is "sdxl" or "sd") is refused before anything runs, naming what exists."""
    from invokeai_diffusers.models.manager import ModelManager

    name = node.model  # type: ignore[attr-defined]
    try:
        found = services.get(ModelManager).get(name)
    except InvokeAIError as e:
        raise NodeFieldError(str(e), node.id, "model") from None
    if found.type != "main":
        raise NodeFieldError(not_a_main_model(found), node.id, "model")
    if base is not None:
        try:
            check_base(found, sdxl=base == "sdxl")
        except DiffusionNodeError as e:
            raise NodeFieldError(e.reason, node.id, "model") from None


#: model type -> how to use such a model instead (in the message refusing it as a main model)
USE_INSTEAD = {
    "lora": "use lora_loader",
    "embedding": "write <NAME> in a prompt",
    "upscaler": "use upscale_image",
    "ip_adapter": "use the ip_adapter node",
    "controlnet": "use the controlnet node",
    "t2i_adapter": "use the t2i_adapter node",
}


def not_a(found: ModelRecord, wanted: str) -> str:
    """`'x' is a main model, not a LoRA` (or an embedding, an upscaler, ...): what a model is not."""
    from invokeai_diffusers.models.manager import KIND_NAMES

    kind = KIND_NAMES.get(found.type, found.type)
    return f"'{found.name}' is {'an' if kind[0] in 'aeiouAEIOU' else 'a'} {kind}, not {wanted}"


def not_a_main_model(found: ModelRecord) -> str:
    from invokeai_diffusers.models.manager import KIND_NAMES

    kind = KIND_NAMES.get(found.type, found.type)
    article = "an" if kind[0] in "aeiouAEIOU" else "a"
    hint = USE_INSTEAD.get(found.type, "").replace("NAME", found.name)
    return f"'{found.name}' is {article} {kind}, not a main model" + (f": {hint}" if hint else "")


def check_base(found: ModelRecord, *, sdxl: bool) -> None:
    """A model loader's own check: SDXL models go through sdxl_model_loader, the others main_model_loader."""
    if found.type != "main":
        raise DiffusionNodeError("model", not_a_main_model(found))
    if found.base in ("flux", "sd-3"):
        loader = "flux_model_loader" if found.base == "flux" else "sd3_model_loader"
        raise DiffusionNodeError("model", f"'{found.name}' is a {found.base} model: use {loader}")
    if sdxl and found.base != "sdxl":
        raise DiffusionNodeError("model", f"'{found.name}' is a {found.base} model: use main_model_loader")
    if not sdxl and found.base == "sdxl":
        raise DiffusionNodeError("model", f"'{found.name}' is an SDXL model: use sdxl_model_loader")


def load(context: InvocationContext, model: str, submodel: str, field: str) -> Any:
    """A model component through the cache, emitting model_load_started/complete on a real load."""
    events = context.services.get(EventServiceBase)

    def on_load(phase: str, name: str, sub: str, seconds: float | None) -> None:
        common = {"session_id": context.session_id, "queue_id": context.queue_id, "item_id": context.item_id}
        if phase == "started":
            events.emit(ModelLoadStartedEvent(**common, model_name=name, submodel=sub))
        elif phase == "evicted":
            events.emit(ModelUnloadedEvent(**common, model_name=name, submodel=sub))
        else:
            events.emit(ModelLoadCompleteEvent(**common, model_name=name, submodel=sub, seconds=seconds or 0.0))

    try:
        return models(context).load(model, submodel, on_load=on_load)
    except InvokeAIError as e:
        raise DiffusionNodeError(field, str(e)) from None


def load_loras(
    context: InvocationContext, loras: list[LoRAField], base: str, field: str
) -> list[tuple[LoRAField, Any]]:
    """Each LoRA's state dict (through the cache, with load events), after checking it is a LoRA of
    the model's base (`base` is the model's: sd-1, sd-2 or sdxl)."""
    out: list[tuple[LoRAField, Any]] = []
    for lora in loras:
        found = record(context, lora.name, field)
        if found.type != "lora":
            raise DiffusionNodeError(field, not_a(found, "a LoRA"))
        if found.base != base:
            raise DiffusionNodeError(field, f"LoRA '{found.name}' is for {found.base}, the model is {base}")
        out.append((lora, load(context, lora.name, "lora", field)))
    return out


def load_embeddings(
    context: InvocationContext, texts: list[str], model_base: str, widths: dict[str, int], field: str
) -> list[tuple[str, dict[str, Any]]]:
    """The installed textual inversion embeddings the texts trigger (`<name>`), loaded through the
    cache and checked against the model (`widths`: text encoder component -> its embedding width).
    A `<word>` that names no installed embedding stays plain text."""
    from invokeai_diffusers.textual_inversion import EmbeddingError, check_fits, trigger_names

    manager = models(context)
    out: list[tuple[str, dict[str, Any]]] = []
    for name in trigger_names(*texts):
        found = manager.records.get(name)
        if found is None or found.type != "embedding":
            continue
        (loaded,) = load(context, name, "embedding", field)
        try:
            check_fits(name, found.base, model_base, loaded, widths)
        except EmbeddingError as e:
            raise DiffusionNodeError(field, str(e)) from None
        out.append((name, loaded))
    return out


def embedding_error(field: str) -> Any:
    """Turns an EmbeddingError raised while injecting embeddings into a DiffusionNodeError naming `field`."""
    from contextlib import contextmanager

    from invokeai_diffusers.textual_inversion import EmbeddingError

    @contextmanager
    def guard() -> Any:
        try:
            yield
        except EmbeddingError as e:
            raise DiffusionNodeError(field, str(e)) from None

    return guard()


def lora_error(field: str) -> Any:
    """Turns a LoRAError raised while applying adapters into a DiffusionNodeError naming `field`."""
    from contextlib import contextmanager

    from invokeai_diffusers.lora import LoRAError

    @contextmanager
    def guard() -> Any:
        try:
            yield
        except LoRAError as e:
            raise DiffusionNodeError(field, str(e)) from None

    return guard()


def device_and_dtype(context: InvocationContext) -> tuple[str, Any]:
    cache = models(context).cache
    return cache.device, cache.dtype


def generator(seed: int) -> Any:
    import torch

    return torch.Generator("cpu").manual_seed(seed)


def check_size(width: int, height: int) -> None:
    for name, value in (("width", width), ("height", height)):
        if value % 8:
            raise DiffusionNodeError(name, f"{value} is not a multiple of 8")


def step_callback(context: InvocationContext, base: str, total: int) -> Any:
    """A `callback_on_step_end` that reports progress with a latent preview and stops on cancel."""
    from invokeai_diffusers.preview import latents_preview

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        latents = kwargs.get("latents")
        preview = (lambda: latents_preview(latents, base)) if latents is not None else None
        context.progress(step + 1, total, image=preview, message=f"denoising step {step + 1}/{total}")
        if context.is_canceled():
            pipe._interrupt = True
        return kwargs

    return callback


def raise_if_canceled(context: InvocationContext) -> None:
    if context.is_canceled():
        raise GenerationCanceled("canceled")


def save_image(context: InvocationContext, image: Any, metadata: dict[str, Any], *, gallery: bool) -> ImageOutput:
    saved = context.images.save(image, is_intermediate=not gallery, metadata=metadata)
    return ImageOutput(image=saved.field, width=image.width, height=image.height)


def store_latents(
    context: InvocationContext, tensor: Any, *, seed: int | None = None, metadata: dict[str, Any] | None = None
) -> LatentsOutput:
    name = context.objects.save(tensor.detach())
    height, width = int(tensor.shape[-2]) * 8, int(tensor.shape[-1]) * 8
    return LatentsOutput(
        latents=LatentsField(latents_name=name, seed=seed, metadata=metadata), width=width, height=height
    )


def load_object(context: InvocationContext, name: str, field: str) -> Any:
    try:
        return context.objects.load(name)
    except KeyError:
        raise DiffusionNodeError(
            field, f"'{name}' is not in the objects service (was it produced in this run?)"
        ) from None

"""Prompt encoding (CLIP), for SD 1.x/2.x (one encoder) and SDXL (two encoders and a pooled vector).

Encoding goes through diffusers' own `encode_prompt`, on a pipeline object assembled from the cached
components, so the embeddings are exactly those the diffusers pipelines compute.
"""

from __future__ import annotations

from typing import Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    Input,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import CLIPField, ConditioningField
from invokeai_diffusers.nodes.common import (
    device_and_dtype,
    embedding_error,
    load,
    load_embeddings,
    load_loras,
    lora_error,
    record,
)


@invocation_output("conditioning_output")
class ConditioningOutput(BaseInvocationOutput):
    """Encoded prompt conditioning."""

    conditioning: ConditioningField = OutputField(description="The conditioning")


def encode_prompt(context: InvocationContext, prompt: str, clip: CLIPField, clip2: CLIPField | None) -> dict[str, Any]:
    """Embeddings for one prompt: `{"embeds", "pooled", "base", "model", "clip"}` (`clip`: the encoder
    and its LoRAs, so an implicit empty negative prompt is encoded the same way). Textual inversion
    embeddings named as `<name>` in the prompt are loaded into the text encoder(s) for this encode."""
    import torch

    from invokeai_diffusers.lora import applied
    from invokeai_diffusers.textual_inversion import injected

    device, _ = device_and_dtype(context)
    model_base = record(context, clip.model, "clip").base
    tokenizer = load(context, clip.model, clip.tokenizer, "clip")
    text_encoder = load(context, clip.model, clip.text_encoder, "clip")
    parts = {clip.text_encoder: (text_encoder, load_loras(context, clip.loras, model_base, "clip"))}
    warn_if_truncated(context, tokenizer, prompt)
    widths = {"text_encoder": int(text_encoder.get_input_embeddings().weight.shape[-1])}
    if clip2 is not None:
        tokenizer_2 = load(context, clip2.model, clip2.tokenizer, "clip2")
        text_encoder_2 = load(context, clip2.model, clip2.text_encoder, "clip2")
        parts[clip2.text_encoder] = (text_encoder_2, load_loras(context, clip2.loras, model_base, "clip2"))
        widths["text_encoder_2"] = int(text_encoder_2.get_input_embeddings().weight.shape[-1])
    embeddings = load_embeddings(context, [prompt], model_base, widths, "prompt")
    if clip2 is None:
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(
            vae=None,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=None,
            scheduler=None,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        with torch.inference_mode(), lora_error("clip"), applied(model_base, parts), embedding_error("prompt"):
            with injected(pipe, embeddings):
                embeds, _ = pipe.encode_prompt(prompt, device, 1, False)
        return {"embeds": embeds, "pooled": None, "base": "sd", "model": clip.model, "clip": clip}
    from diffusers import StableDiffusionXLPipeline

    pipe_xl = StableDiffusionXLPipeline(
        vae=None,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=None,
        scheduler=None,
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )
    with torch.inference_mode(), lora_error("clip"), applied(model_base, parts), embedding_error("prompt"):
        with injected(pipe_xl, embeddings):
            embeds, _, pooled, _ = pipe_xl.encode_prompt(
                prompt=prompt, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
            )
    return {"embeds": embeds, "pooled": pooled, "base": "sdxl", "model": clip.model}


def warn_if_truncated(context: InvocationContext, tokenizer: Any, prompt: str) -> None:
    ids = tokenizer(prompt, padding="longest", truncation=False).input_ids
    limit = tokenizer.model_max_length
    if len(ids) > limit:
        context.logger.warning(
            "prompt of node %s is %d tokens; the text encoder takes %d, the rest is ignored",
            context.node_id,
            len(ids),
            limit,
        )


@invocation("prompt", title="Prompt", tags=["prompt", "conditioning"], category="conditioning", version="1.0.0")
class PromptInvocation(BaseInvocation):
    """Encodes a prompt with CLIP (connect `clip2` too for SDXL). Long prompts are truncated with a warning.

    `<name>` in the prompt applies the installed textual inversion embedding `name`."""

    prompt: str = InputField(default="", description="The prompt", ui_component="textarea")
    clip: CLIPField = InputField(description="The text encoder (from a model loader)", input=Input.Connection)
    clip2: CLIPField | None = InputField(
        default=None, description="SDXL's second text encoder (from sdxl_model_loader)", input=Input.Connection
    )

    def invoke(self, context: InvocationContext) -> ConditioningOutput:
        encoded = encode_prompt(context, self.prompt, self.clip, self.clip2)
        name = context.objects.save(encoded)
        return ConditioningOutput(conditioning=ConditioningField(conditioning_name=name))

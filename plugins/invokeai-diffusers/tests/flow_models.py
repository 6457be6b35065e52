"""Tiny random-weight FLUX.1 and SD3.5 pipelines, built offline in the tests (not by the plugin).

Shapes follow diffusers' own FLUX/SD3 pipeline tests, with a 4-level VAE so latents are 1/8 of the
image like the real models. Tokenizers are built in code: CLIP from a byte vocabulary (as
conftest's models), T5 as a `tokenizers` Unigram model (`T5Tokenizer(vocab=...)`, backed by the
tokenizers library in transformers 5). Every module is put in eval mode (T5 has dropout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def t5_tokenizer() -> Any:
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in LETTERS] + [("▁" + c, -2.5) for c in LETTERS]
    vocab += [("▁a", -1.0), ("▁the", -1.0), ("▁red", -1.0), ("▁fox", -1.0)]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)


def t5_encoder(d_model: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=64,
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        dropout_rate=0.1,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return T5EncoderModel(config).eval()


def clip_tokenizer() -> Any:
    from invokeai_diffusers.models.demo import bytes_to_unicode
    from transformers import CLIPTokenizer

    chars = bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def clip_encoder(*, projection: bool, hidden: int = 32, seed: int = 0) -> Any:
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        hidden_size=hidden,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=514,
        max_position_embeddings=77,
        projection_dim=hidden,
        hidden_act="gelu",
    )
    return (CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)).eval()


def vae(latent_channels: int, *, shift: float, scale: float) -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[8, 8, 16, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=64,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=shift,
        scaling_factor=scale,
    ).eval()


def build_flux(folder: Path, *, guidance_embeds: bool, seed: int = 0) -> Path:
    """A tiny FLUX.1 pipeline (dev-style with guidance_embeds, else schnell-style) saved to `folder`."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=16,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=guidance_embeds,
        axes_dims_rope=[4, 4, 8],
    ).eval()
    scheduler = (
        FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096
        )
        if guidance_embeds
        else FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)
    )
    torch.manual_seed(seed + 1)
    pipe = FluxPipeline(
        scheduler=scheduler,
        vae=vae(4, shift=0.1159, scale=0.3611),
        text_encoder=clip_encoder(projection=False, seed=seed + 2),
        tokenizer=clip_tokenizer(),
        text_encoder_2=t5_encoder(32),
        tokenizer_2=t5_tokenizer(),
        transformer=transformer,
    )
    pipe.save_pretrained(folder)
    return folder


def build_sd3(folder: Path, *, seed: int = 0) -> Path:
    """A tiny SD3.5-style pipeline (MMDiT, CLIP-L, CLIP-G, T5) saved to `folder`."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=4,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=64,
        out_channels=4,
        pos_embed_max_size=32,
    ).eval()
    torch.manual_seed(seed + 1)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=vae(4, shift=0.0609, scale=1.5305),
        text_encoder=clip_encoder(projection=True, seed=seed + 2),
        tokenizer=clip_tokenizer(),
        text_encoder_2=clip_encoder(projection=True, seed=seed + 3),
        tokenizer_2=clip_tokenizer(),
        text_encoder_3=t5_encoder(64),
        tokenizer_3=t5_tokenizer(),
    )
    pipe.save_pretrained(folder)
    return folder


def sd3_original_layout(transformer: Any) -> dict[str, Any]:
    """An SD3 transformer's weights in the original (Stability) single-file key layout, under
    `model.diffusion_model.`: the inverse of diffusers' `convert_sd3_transformer_checkpoint_to_diffusers`
    for a model without dual attention or qk-norm (fused qkv, `joint_blocks.N.x_block/context_block`,
    the final context block and final layer with shift/scale in the original order)."""
    import torch

    sd = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    out: dict[str, Any] = {}

    def swap(t: Any) -> Any:
        a, b = t.chunk(2, dim=0)
        return torch.cat([b, a], dim=0)

    def move(src: str, dst: str, fn: Any = None) -> None:
        for suffix in ("weight", "bias"):
            if f"{src}.{suffix}" in sd:
                value = sd.pop(f"{src}.{suffix}")
                out[f"{dst}.{suffix}"] = fn(value) if fn else value

    out["pos_embed"] = sd.pop("pos_embed.pos_embed")
    move("pos_embed.proj", "x_embedder.proj")
    move("time_text_embed.timestep_embedder.linear_1", "t_embedder.mlp.0")
    move("time_text_embed.timestep_embedder.linear_2", "t_embedder.mlp.2")
    move("context_embedder", "context_embedder")
    move("time_text_embed.text_embedder.linear_1", "y_embedder.mlp.0")
    move("time_text_embed.text_embedder.linear_2", "y_embedder.mlp.2")
    layers = transformer.config.num_layers
    for i in range(layers):
        b, j = f"transformer_blocks.{i}", f"joint_blocks.{i}"
        last = i == layers - 1
        for suffix in ("weight", "bias"):
            out[f"{j}.x_block.attn.qkv.{suffix}"] = torch.cat(
                [sd.pop(f"{b}.attn.to_{x}.{suffix}") for x in ("q", "k", "v")]
            )
            out[f"{j}.context_block.attn.qkv.{suffix}"] = torch.cat(
                [sd.pop(f"{b}.attn.add_{x}_proj.{suffix}") for x in ("q", "k", "v")]
            )
        move(f"{b}.attn.to_out.0", f"{j}.x_block.attn.proj")
        move(f"{b}.norm1.linear", f"{j}.x_block.adaLN_modulation.1")
        move(f"{b}.norm1_context.linear", f"{j}.context_block.adaLN_modulation.1", swap if last else None)
        move(f"{b}.ff.net.0.proj", f"{j}.x_block.mlp.fc1")
        move(f"{b}.ff.net.2", f"{j}.x_block.mlp.fc2")
        if not last:
            move(f"{b}.attn.to_add_out", f"{j}.context_block.attn.proj")
            move(f"{b}.ff_context.net.0.proj", f"{j}.context_block.mlp.fc1")
            move(f"{b}.ff_context.net.2", f"{j}.context_block.mlp.fc2")
    move("proj_out", "final_layer.linear")
    move("norm_out.linear", "final_layer.adaLN_modulation.1", swap)
    assert not sd, f"unmapped keys: {sorted(sd)[:5]}"
    return {"model.diffusion_model." + k: v.contiguous() for k, v in out.items()}


def flux_bfl_layout(transformer: Any, prefix: str = "") -> dict[str, Any]:
    """A FLUX transformer's weights in Black Forest Labs' single-file layout (`double_blocks.`,
    `single_blocks.`, fused qkv and linear1, `final_layer` with shift/scale in the original order):
    the inverse of diffusers' `convert_flux_transformer_checkpoint_to_diffusers`."""
    import torch

    sd = {k: v.detach().clone() for k, v in transformer.state_dict().items()}
    out: dict[str, Any] = {}

    def move(src: str, dst: str, swap: bool = False) -> None:
        for suffix in ("weight", "bias"):
            if f"{src}.{suffix}" in sd:
                value = sd.pop(f"{src}.{suffix}")
                if swap:
                    a, b = value.chunk(2, dim=0)
                    value = torch.cat([b, a], dim=0)
                out[f"{dst}.{suffix}"] = value

    def fuse(srcs: list[str], dst: str) -> None:
        for suffix in ("weight", "bias"):
            out[f"{dst}.{suffix}"] = torch.cat([sd.pop(f"{s}.{suffix}") for s in srcs])

    def scale(src: str, dst: str) -> None:
        out[dst] = sd.pop(src)

    t = "time_text_embed"
    move(f"{t}.timestep_embedder.linear_1", "time_in.in_layer")
    move(f"{t}.timestep_embedder.linear_2", "time_in.out_layer")
    move(f"{t}.text_embedder.linear_1", "vector_in.in_layer")
    move(f"{t}.text_embedder.linear_2", "vector_in.out_layer")
    move(f"{t}.guidance_embedder.linear_1", "guidance_in.in_layer")
    move(f"{t}.guidance_embedder.linear_2", "guidance_in.out_layer")
    move("context_embedder", "txt_in")
    move("x_embedder", "img_in")
    for i in range(transformer.config.num_layers):
        b, d = f"transformer_blocks.{i}", f"double_blocks.{i}"
        move(f"{b}.norm1.linear", f"{d}.img_mod.lin")
        move(f"{b}.norm1_context.linear", f"{d}.txt_mod.lin")
        fuse([f"{b}.attn.to_{x}" for x in "qkv"], f"{d}.img_attn.qkv")
        fuse([f"{b}.attn.add_{x}_proj" for x in "qkv"], f"{d}.txt_attn.qkv")
        scale(f"{b}.attn.norm_q.weight", f"{d}.img_attn.norm.query_norm.scale")
        scale(f"{b}.attn.norm_k.weight", f"{d}.img_attn.norm.key_norm.scale")
        scale(f"{b}.attn.norm_added_q.weight", f"{d}.txt_attn.norm.query_norm.scale")
        scale(f"{b}.attn.norm_added_k.weight", f"{d}.txt_attn.norm.key_norm.scale")
        move(f"{b}.ff.net.0.proj", f"{d}.img_mlp.0")
        move(f"{b}.ff.net.2", f"{d}.img_mlp.2")
        move(f"{b}.ff_context.net.0.proj", f"{d}.txt_mlp.0")
        move(f"{b}.ff_context.net.2", f"{d}.txt_mlp.2")
        move(f"{b}.attn.to_out.0", f"{d}.img_attn.proj")
        move(f"{b}.attn.to_add_out", f"{d}.txt_attn.proj")
    for i in range(transformer.config.num_single_layers):
        b, s = f"single_transformer_blocks.{i}", f"single_blocks.{i}"
        move(f"{b}.norm.linear", f"{s}.modulation.lin")
        fuse([f"{b}.attn.to_q", f"{b}.attn.to_k", f"{b}.attn.to_v", f"{b}.proj_mlp"], f"{s}.linear1")
        scale(f"{b}.attn.norm_q.weight", f"{s}.norm.query_norm.scale")
        scale(f"{b}.attn.norm_k.weight", f"{s}.norm.key_norm.scale")
        move(f"{b}.proj_out", f"{s}.linear2")
    move("proj_out", "final_layer.linear")
    move("norm_out.linear", "final_layer.adaLN_modulation.1", swap=True)
    assert not sd, f"unmapped keys: {sorted(sd)[:5]}"
    return {prefix + k: v.contiguous() for k, v in out.items()}

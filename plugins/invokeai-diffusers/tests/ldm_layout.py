"""Write a diffusers model folder out as a single-file checkpoint in the original LDM/SGM layout.

The tests need single-file checkpoints and none can be downloaded, so they make their own from the
small random-weight folders: the inverse of diffusers' `convert_ldm_*` functions, generic over the
config (block counts, layers per block), for the UNet, the VAE, CLIP text encoders (SD 1.x, SDXL's
first) and OpenCLIP ones (SD 2.x, SDXL's second). Loading such a file back must give the folder's
exact weights, which is what the single-file tests check, pixel for pixel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

UNET_RESNET = [
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
]
VAE_ATTENTION = [
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
]


def _rename(state: dict[str, Any], prefixes: dict[str, str]) -> dict[str, tuple[str, Any]]:
    """key -> (new key, tensor), replacing the longest matching diffusers prefix."""
    ordered = sorted(prefixes, key=len, reverse=True)
    out: dict[str, tuple[str, Any]] = {}
    for key, tensor in state.items():
        prefix = next((p for p in ordered if key.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"no LDM name for {key}")
        out[key] = (prefixes[prefix] + key[len(prefix) :], tensor)
    return out


def unet_to_ldm(unet: Any) -> dict[str, Any]:
    cfg = unet.config
    per_block = cfg.layers_per_block
    blocks = len(cfg.block_out_channels)
    prefixes = {
        "time_embedding.linear_1.": "time_embed.0.",
        "time_embedding.linear_2.": "time_embed.2.",
        "add_embedding.linear_1.": "label_emb.0.0.",
        "add_embedding.linear_2.": "label_emb.0.2.",
        "conv_in.": "input_blocks.0.0.",
        "conv_norm_out.": "out.0.",
        "conv_out.": "out.2.",
        "mid_block.resnets.0.": "middle_block.0.",
        "mid_block.attentions.0.": "middle_block.1.",
        "mid_block.resnets.1.": "middle_block.2.",
    }
    for i in range(blocks):
        for j in range(per_block):
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{(per_block + 1) * i + j + 1}.0."
            prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{(per_block + 1) * i + j + 1}.1."
        for j in range(per_block + 1):
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{(per_block + 1) * i + j}.0."
            prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{(per_block + 1) * i + j}.1."
        if i < blocks - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{(per_block + 1) * (i + 1)}.0.op."
            has_attention = "CrossAttn" in cfg.up_block_types[i]
            index = (per_block + 1) * i + per_block
            prefixes[f"up_blocks.{i}.upsamplers.0."] = f"output_blocks.{index}.{2 if has_attention else 1}."
    out = {}
    for key, (new, tensor) in _rename(unet.state_dict(), prefixes).items():
        if ".resnets." in key or key.startswith("mid_block.resnets"):
            for old, ldm in UNET_RESNET:
                new = new.replace("." + old, "." + ldm)
        out["model.diffusion_model." + new] = tensor
    return out


def vae_to_ldm(vae: Any) -> dict[str, Any]:
    cfg = vae.config
    per_block = cfg.layers_per_block
    blocks = len(cfg.block_out_channels)
    prefixes = {
        "quant_conv.": "quant_conv.",
        "post_quant_conv.": "post_quant_conv.",
    }
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.conv_in."] = f"{part}.conv_in."
        prefixes[f"{part}.conv_out."] = f"{part}.conv_out."
        prefixes[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        prefixes[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
        for k in range(2):
            prefixes[f"{part}.mid_block.resnets.{k}."] = f"{part}.mid.block_{k + 1}."
    for i in range(blocks):
        for j in range(per_block):
            prefixes[f"encoder.down_blocks.{i}.resnets.{j}."] = f"encoder.down.{i}.block.{j}."
        for j in range(per_block + 1):
            prefixes[f"decoder.up_blocks.{i}.resnets.{j}."] = f"decoder.up.{blocks - 1 - i}.block.{j}."
        if i < blocks - 1:
            prefixes[f"encoder.down_blocks.{i}.downsamplers.0.conv."] = f"encoder.down.{i}.downsample.conv."
            prefixes[f"decoder.up_blocks.{i}.upsamplers.0.conv."] = f"decoder.up.{blocks - 1 - i}.upsample.conv."
    out = {}
    for key, (new, tensor) in _rename(vae.state_dict(), prefixes).items():
        if ".attentions." in key:
            for old, ldm in VAE_ATTENTION:
                new = new.replace("." + old, "." + ldm)
            if new.endswith(".weight") and tensor.ndim == 2:
                tensor = tensor.reshape(*tensor.shape, 1, 1)  # LDM's attention projections are 1x1 convs
        elif ".resnets." in key:
            new = new.replace(".conv_shortcut.", ".nin_shortcut.")
        out["first_stage_model." + new] = tensor
    return out


def clip_to_ldm(text_encoder: Any, prefix: str) -> dict[str, Any]:
    """A transformers CLIP text model as LDM stores it (the HF names under `prefix`)."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {f"{prefix}text_model.{k}": v for k, v in state.items()}
    positions = state["embeddings.position_embedding.weight"].shape[0]
    out[f"{prefix}text_model.embeddings.position_ids"] = torch.arange(positions).unsqueeze(0)
    return out


def open_clip_to_ldm(text_encoder: Any, prefix: str) -> dict[str, Any]:
    """A transformers CLIP text model in OpenCLIP's layout (fused q/k/v, transposed projection)."""
    import torch

    state = {k.removeprefix("text_model."): v for k, v in text_encoder.state_dict().items()}
    out = {
        prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
        prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
        prefix + "ln_final.weight": state["final_layer_norm.weight"],
        prefix + "ln_final.bias": state["final_layer_norm.bias"],
    }
    if "text_projection.weight" in state:
        out[prefix + "text_projection"] = state["text_projection.weight"].T.contiguous()
    for i in range(text_encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{i}.", f"{prefix}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{dst}attn.in_proj_{kind}"] = torch.cat(
                [state[f"{src}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")], dim=0
            )
            out[f"{dst}attn.out_proj.{kind}"] = state[f"{src}self_attn.out_proj.{kind}"]
            out[f"{dst}ln_1.{kind}"] = state[f"{src}layer_norm1.{kind}"]
            out[f"{dst}ln_2.{kind}"] = state[f"{src}layer_norm2.{kind}"]
            out[f"{dst}mlp.c_fc.{kind}"] = state[f"{src}mlp.fc1.{kind}"]
            out[f"{dst}mlp.c_proj.{kind}"] = state[f"{src}mlp.fc2.{kind}"]
    return out


def folder_to_checkpoint(folder: Path, out: Path, *, base: str) -> Path:
    """Save the diffusers folder's weights as one `.safetensors` (or a pickled `.ckpt`) file."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    state = unet_to_ldm(UNet2DConditionModel.from_pretrained(folder, subfolder="unet"))
    state.update(vae_to_ldm(AutoencoderKL.from_pretrained(folder, subfolder="vae")))
    text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    if base == "sd-1":
        state.update(clip_to_ldm(text_encoder, "cond_stage_model.transformer."))
    elif base == "sd-2":
        state.update(open_clip_to_ldm(text_encoder, "cond_stage_model.model."))
    else:
        state.update(clip_to_ldm(text_encoder, "conditioner.embedders.0.transformer."))
        second = CLIPTextModelWithProjection.from_pretrained(folder, subfolder="text_encoder_2")
        state.update(open_clip_to_ldm(second, "conditioner.embedders.1.model."))
    state = {k: v.contiguous() for k, v in state.items()}
    if out.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(out))
    else:
        torch.save({"state_dict": state, "global_step": 1}, str(out))
    return out

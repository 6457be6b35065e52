"""A tiny random LoRA and ControlNet for the demo model, built offline, for the browser tests.

Run as a script (`python guidance_models.py DEMO_MODEL_FOLDER OUT_FOLDER`) so the test process never
imports torch: it writes OUT/demo-lora.safetensors (peft adapters on the UNet's attention and the text
encoder's projections, saved the way diffusers' `save_lora_weights` does) and OUT/demo-controlnet/
(`ControlNetModel.from_unet` of the demo UNet with small random control blocks). Both are what
`invokeai models add` probes as a LoRA and a ControlNet of the demo model's base.
"""

from __future__ import annotations

import sys
from pathlib import Path


def make_lora(model_folder: Path, out: Path, seed: int = 1) -> Path:
    """A rank-4 LoRA; the text encoder's adapter is injected with peft itself (as the diffusers
    plugin's tests do: transformers' `add_adapter` wants a newer peft than `load_adapter` does)."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(str(model_folder), local_files_only=True)
    torch.manual_seed(seed)
    unet_cfg = LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    te_cfg = LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    for cfg in (unet_cfg, te_cfg):
        cfg.init_lora_weights = False  # random B matrices too: the LoRA really changes the result
    pipe.unet.add_adapter(unet_cfg)
    inject_adapter_in_model(te_cfg, pipe.text_encoder)
    StableDiffusionPipeline.save_lora_weights(
        str(out.parent),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)),
        weight_name=out.name,
        safe_serialization=True,
    )
    return out


def make_controlnet(model_folder: Path, out: Path, seed: int = 2) -> Path:
    """A ControlNet of the demo UNet whose zero-initialised control blocks get small random weights
    (so the control image really changes the result)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(model_folder), subfolder="unet", local_files_only=True)
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64, 128))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for part in (net.controlnet_down_blocks, net.controlnet_mid_block):
            for p in part.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    net.save_pretrained(str(out))
    return out


if __name__ == "__main__":
    model, target = Path(sys.argv[1]), Path(sys.argv[2])
    target.mkdir(parents=True, exist_ok=True)
    print(make_lora(model, target / "demo-lora.safetensors"))
    print(make_controlnet(model, target / "demo-controlnet"))

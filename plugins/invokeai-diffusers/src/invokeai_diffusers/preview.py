"""Cheap progress previews straight from latents (a linear map to RGB, no VAE decode)."""

from __future__ import annotations

from typing import Any

# Approximate latent -> RGB factors (as used by InvokeAI and ComfyUI for live previews).
SD_FACTORS = [
    [0.3444, 0.1385, 0.0670],
    [0.1247, 0.4027, 0.1494],
    [-0.3192, 0.2513, 0.2103],
    [-0.1307, -0.1874, -0.7445],
]
SDXL_FACTORS = [
    [0.3651, 0.4232, 0.4341],
    [-0.2533, -0.0042, 0.1068],
    [0.1076, 0.1111, -0.0362],
    [-0.3165, -0.2492, -0.2188],
]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]


def latents_preview(latents: Any, base: str) -> Any:
    """A small PIL image of the first latent in the batch."""
    import torch
    from PIL import Image

    factors = torch.tensor(SDXL_FACTORS if base == "sdxl" else SD_FACTORS, dtype=torch.float32)
    sample = latents[0].detach().to("cpu", torch.float32)  # (4, h, w)
    rgb = torch.einsum("chw,cr->hwr", sample, factors)
    if base == "sdxl":
        rgb = rgb + torch.tensor(SDXL_BIAS)
    pixels = ((rgb + 1.0) / 2.0).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
    return Image.fromarray(pixels, "RGB")

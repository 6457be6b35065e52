"""Fixtures: small random-weight models built once per test session (offline), installed per test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from invokeai_diffusers.models.demo import build_sd, build_sdxl

    base = tmp_path_factory.mktemp("models")
    return {"sd": build_sd(base / "tiny-sd"), "sdxl": build_sdxl(base / "tiny-sdxl")}


@pytest.fixture
def manager(invokeai_invoker: Any, model_folders: dict[str, Path]) -> Any:
    from invokeai_diffusers.models.manager import ModelManager

    mm = invokeai_invoker.services.get(ModelManager)
    mm.add(model_folders["sd"], name="tiny-sd")
    mm.add(model_folders["sdxl"], name="tiny-sdxl")
    return mm


def edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def granular_txt2img(
    model: str,
    *,
    prompt: str,
    negative: str | None,
    seed: int,
    size: int,
    steps: int,
    scheduler: str,
    cfg: float = 7.5,
    sdxl: bool = False,
) -> dict[str, Any]:
    loader = {"id": "m", "type": "sdxl_model_loader" if sdxl else "main_model_loader", "model": model}
    nodes: dict[str, Any] = {
        "m": loader,
        "p": {"id": "p", "type": "prompt", "prompt": prompt},
        "z": {"id": "z", "type": "noise", "seed": seed, "width": size, "height": size},
        "d": {"id": "d", "type": "denoise_latents", "steps": steps, "cfg_scale": cfg, "scheduler": scheduler},
        "l": {"id": "l", "type": "latents_to_image"},
    }
    edges = [
        edge("m", "clip", "p", "clip"),
        edge("m", "unet", "d", "unet"),
        edge("p", "conditioning", "d", "positive_conditioning"),
        edge("z", "latents", "d", "noise"),
        edge("d", "latents", "l", "latents"),
        edge("m", "vae", "l", "vae"),
    ]
    if sdxl:
        edges.append(edge("m", "clip2", "p", "clip2"))
    if negative is not None:
        nodes["n"] = {"id": "n", "type": "prompt", "prompt": negative}
        edges += [edge("m", "clip", "n", "clip"), edge("n", "conditioning", "d", "negative_conditioning")]
        if sdxl:
            edges.append(edge("m", "clip2", "n", "clip2"))
    return {"nodes": nodes, "edges": edges}


def pixels(invoker: Any, image_field: Any) -> Any:
    import numpy as np

    return np.asarray(invoker.services.image_service.get_pil(image_field.image_name)).astype(int)

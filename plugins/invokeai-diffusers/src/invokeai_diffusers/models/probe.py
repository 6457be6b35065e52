"""Probing a model folder or checkpoint file for its base (sd-1, sd-2, sdxl) and variant."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from invokeai_core.errors import InvokeAIError

PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})


class ModelProbeError(InvokeAIError):
    """The path is not a model we can use (the message says why)."""


@dataclass(frozen=True)
class ProbeResult:
    base: str
    variant: str
    format: str


def probe(path: Path) -> ProbeResult:
    if path.is_dir():
        return _probe_folder(path)
    if path.is_file():
        return _probe_file(path)
    raise ModelProbeError(f"{path}: no such file or folder")


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelProbeError(f"{path}: cannot read it ({e})") from None
    if not isinstance(data, dict):
        raise ModelProbeError(f"{path}: not a JSON object")
    return data


def _probe_folder(path: Path) -> ProbeResult:
    index = path / "model_index.json"
    if not index.exists():
        raise ModelProbeError(f"{path}: not a diffusers model folder (no model_index.json)")
    meta = _read_json(index)
    class_name = str(meta.get("_class_name", ""))
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if part not in meta:
            raise ModelProbeError(f"{path}: model_index.json has no '{part}' (not a Stable Diffusion pipeline)")
        if not (path / part).is_dir():
            raise ModelProbeError(f"{path}: the '{part}' folder is missing")
    unet = _read_json(path / "unet" / "config.json")
    in_channels = unet.get("in_channels", 4)
    variant = "inpaint" if in_channels == 9 or "Inpaint" in class_name else "normal"
    if "XL" in class_name or "text_encoder_2" in meta:
        base = "sdxl"
    else:
        te = _read_json(path / "text_encoder" / "config.json")
        cross = unet.get("cross_attention_dim")
        base = "sd-2" if cross == 1024 or te.get("hidden_act") == "gelu" else "sd-1"
    return ProbeResult(base=base, variant=variant, format="diffusers")


def _probe_file(path: Path) -> ProbeResult:
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelProbeError(
            f"{path}: '{suffix}' checkpoints are Python pickles, which can run arbitrary code when loaded; "
            "convert it to .safetensors, or set plugins.diffusers.allow_pickle = true if you trust its source"
        )
    if suffix != ".safetensors":
        raise ModelProbeError(f"{path}: not a model file (expected .safetensors)")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            conv_in = next((k for k in keys if k.endswith("input_blocks.0.0.weight")), None)
            in_channels = f.get_slice(conv_in).get_shape()[1] if conv_in else 4
    except Exception as e:
        raise ModelProbeError(f"{path}: not a readable safetensors file ({e})") from None
    if any(k.startswith("conditioner.embedders.1") for k in keys):
        base = "sdxl"
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        base = "sd-2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in keys):
        base = "sd-1"
    else:
        raise ModelProbeError(f"{path}: not a Stable Diffusion 1.x, 2.x or XL checkpoint (unknown key layout)")
    return ProbeResult(base=base, variant="inpaint" if in_channels == 9 else "normal", format="checkpoint")


def hash_and_size(path: Path) -> tuple[str, int]:
    """blake2b over the files (sorted relative paths and contents) and their total size."""
    digest = hashlib.blake2b(digest_size=16)
    total = 0
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        rel = file.relative_to(path).as_posix() if path.is_dir() else file.name
        digest.update(rel.encode())
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
    return "blake2b:" + digest.hexdigest(), total

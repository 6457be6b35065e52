"""Probing a model folder or checkpoint file for its base (sd-1, sd-2, sdxl) and variant.

Checkpoints are recognised by their key layout: `cond_stage_model.transformer.` (CLIP, SD 1.x),
`cond_stage_model.model.` (OpenCLIP, SD 2.x), `conditioner.embedders.1.` (two encoders, SDXL).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from invokeai_core import InvokeAIError
from invokeai_diffusers.models.single_file import PICKLE_SUFFIXES, CheckpointError, read_shapes

__all__ = ["PICKLE_SUFFIXES", "ModelProbeError", "ProbeResult", "hash_and_size", "probe"]


class ModelProbeError(InvokeAIError):
    """The path is not a model we can use (the message says why)."""


@dataclass(frozen=True)
class ProbeResult:
    base: str
    variant: str
    format: str
    in_channels: int | None = None  # checkpoints only: the UNet's input channels
    cross_attention_dim: int | None = None  # checkpoints only: the text width the UNet attends to
    type: str = "main"  # or "lora", "embedding", "upscaler", "ip_adapter", "controlnet", "t2i_adapter"


def probe(path: Path, *, allow_pickle: bool = False) -> ProbeResult:
    if path.is_dir():
        return _probe_folder(path)
    if path.is_file():
        return _probe_file(path, allow_pickle)
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
    if not index.exists() and (path / "config.json").is_file():
        from invokeai_diffusers.models.control_probe import probe_control_folder

        return probe_control_folder(path, _read_json(path / "config.json"))
    if not index.exists():
        raise ModelProbeError(f"{path}: not a diffusers model folder (no model_index.json)")
    meta = _read_json(index)
    class_name = str(meta.get("_class_name", ""))
    if class_name in TRANSFORMER_PIPELINES:
        return _probe_transformer_folder(path, meta, class_name)
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


def _probe_file(path: Path, allow_pickle: bool) -> ProbeResult:
    suffix = path.suffix.lower()
    if suffix not in PICKLE_SUFFIXES and suffix != ".safetensors":
        raise ModelProbeError(f"{path}: not a model file (expected .safetensors)")
    try:
        shapes = read_shapes(path, allow_pickle=allow_pickle)
    except CheckpointError as e:
        raise ModelProbeError(str(e)) from None
    keys = list(shapes)
    if is_lora(keys):
        return ProbeResult(base=lora_base(shapes), variant="normal", format="lora", type="lora")
    from invokeai_diffusers.ip_adapter import image_encoder_folder, ip_adapter_base, is_ip_adapter

    if is_ip_adapter(keys):
        if suffix != ".safetensors":
            raise ModelProbeError(f"{path}: IP-Adapters are read from .safetensors files (as load_ip_adapter does)")
        encoder = image_encoder_folder(path)
        if not (encoder / "config.json").is_file():
            raise ModelProbeError(
                f"{path}: an IP-Adapter needs its CLIP image encoder beside it, in {encoder} "
                "(a CLIPVisionModelWithProjection folder, as in h94/IP-Adapter's models/image_encoder)"
            )
        return ProbeResult(base=ip_adapter_base(shapes), variant="normal", format="ip_adapter", type="ip_adapter")
    from invokeai_diffusers.models.control_probe import control_checkpoint

    control = control_checkpoint(path, shapes)
    if control is not None:
        return control
    embedding = _probe_embedding(path, shapes, allow_pickle)
    if embedding is not None:
        return embedding
    flow = transformer_checkpoint(keys)
    if flow is not None:
        return ProbeResult(base=flow[0], variant=flow[1], format="checkpoint")
    if any(k.startswith("conditioner.embedders.1.") for k in keys):
        base = "sdxl"
    elif any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        raise ModelProbeError(f"{path}: an SDXL refiner checkpoint; only base SDXL models are supported")
    elif any(k.startswith("cond_stage_model.model.") for k in keys):
        base = "sd-2"
    elif any(k.startswith("cond_stage_model.transformer.") for k in keys):
        base = "sd-1"
    else:
        from invokeai_diffusers.upscale import probe_upscaler

        if probe_upscaler(path, shapes, allow_pickle=allow_pickle) is not None:
            return ProbeResult(base="any", variant="normal", format="spandrel", type="upscaler")
        raise ModelProbeError(
            f"{path}: not a Stable Diffusion 1.x, 2.x or XL checkpoint, nor an upscaler spandrel knows "
            "(unknown key layout)"
        )
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is None or len(conv_in) != 4:
        raise ModelProbeError(f"{path}: the checkpoint has no UNet (model.diffusion_model.input_blocks.0.0.weight)")
    to_k = next(
        (s for k, s in shapes.items() if k.startswith("model.diffusion_model.") and k.endswith("attn2.to_k.weight")),
        None,
    )
    return ProbeResult(
        base=base,
        variant="inpaint" if conv_in[1] == 9 else "normal",
        format="checkpoint",
        in_channels=conv_in[1],
        cross_attention_dim=to_k[1] if to_k is not None else None,
    )


def _probe_embedding(path: Path, shapes: dict[str, tuple[int, ...]], allow_pickle: bool) -> ProbeResult | None:
    """A textual inversion embedding (see `textual_inversion.embedding_base`); an A1111 `.pt` keeps its
    vectors in a nested `string_to_param`, which the flat shape listing of a pickle leaves out."""
    from invokeai_diffusers.textual_inversion import EmbeddingError, embedding_base, read_embedding

    base = embedding_base(shapes)
    if base is None and not shapes and path.suffix.lower() in PICKLE_SUFFIXES:
        try:
            found = read_embedding(path, allow_pickle=allow_pickle)
        except EmbeddingError:
            return None
        base = embedding_base({k: tuple(v.shape) for k, v in found.items()} if len(found) == 1 else {})
    if base is None:
        return None
    return ProbeResult(base=base, variant="normal", format="embedding", type="embedding")


DOWN_MARKERS = (".lora_A.", ".lora_down.", ".lora.down.", "lora_linear_layer.down.", "_lora.down.")


def is_lora(keys: list[str]) -> bool:
    """A LoRA file, by diffusers' own test (`load_lora_weights`): every key names a LoRA part
    (peft `lora_A`/`lora_B`, kohya `lora_down`/`lora_up` and `.alpha`, older diffusers
    `lora_linear_layer`/`to_q_lora`)."""
    return bool(keys) and all("lora" in k.lower() for k in keys)


def lora_base(shapes: dict[str, tuple[int, ...]]) -> str:
    """The base a LoRA was made for: a second text encoder means SDXL; otherwise the text width its
    cross-attention keys take (1024 SD 2.x, 2048 SDXL, else SD 1.x)."""
    if any(k.startswith(("text_encoder_2.", "lora_te2_")) for k in shapes):
        return "sdxl"
    for key, shape in shapes.items():
        if "attn2" in key and "to_k" in key and any(m in key for m in DOWN_MARKERS):
            if len(shape) == 2 and shape[1] == 2048:
                return "sdxl"
            if len(shape) == 2 and shape[1] == 1024:
                return "sd-2"
            break
    return "sd-1"


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


# -- FLUX.1 and SD3.5 (transformer models) --------------------------------------------------------
#: pipeline class -> (base, the folders the pipeline needs)
TRANSFORMER_PIPELINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "FluxPipeline": (
        "flux",
        ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
    ),
    "FluxImg2ImgPipeline": (
        "flux",
        ("transformer", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2", "scheduler"),
    ),
    "StableDiffusion3Pipeline": (
        "sd-3",
        (
            "transformer",
            "vae",
            "text_encoder",
            "tokenizer",
            "text_encoder_2",
            "tokenizer_2",
            "text_encoder_3",
            "tokenizer_3",
            "scheduler",
        ),
    ),
}


def _probe_transformer_folder(path: Path, meta: dict[str, object], class_name: str) -> ProbeResult:
    """A FLUX.1 (dev/schnell) or SD3.5 diffusers folder: every component the pipeline needs must be
    there; the variant of a FLUX model is `dev` when its transformer embeds the guidance, else `schnell`."""
    base, parts = TRANSFORMER_PIPELINES[class_name]
    for part in parts:
        spec = meta.get(part)
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0]):
            raise ModelProbeError(f"{path}: model_index.json has no '{part}' (a {class_name} needs it)")
        if not (path / part).is_dir():
            raise ModelProbeError(f"{path}: the '{part}' folder is missing")
    transformer = _read_json(path / "transformer" / "config.json")
    variant = "normal"
    if base == "flux":
        variant = "dev" if transformer.get("guidance_embeds") else "schnell"
    return ProbeResult(base=base, variant=variant, format="diffusers")


def transformer_checkpoint(keys: list[str]) -> tuple[str, str] | None:
    """(base, variant) of a FLUX.1 or SD3.5 single-file checkpoint by its key layout, else None:
    FLUX's `double_blocks.`/`single_blocks.` (dev: with `guidance_in.`), SD3's `joint_blocks.`,
    bare or under `model.diffusion_model.`."""

    def has(prefix: str) -> bool:
        return any(k.startswith((prefix, "model.diffusion_model." + prefix)) for k in keys)

    if has("double_blocks.") and has("single_blocks."):
        return "flux", "dev" if has("guidance_in.") else "schnell"
    if has("joint_blocks."):
        return "sd-3", "normal"
    return None

"""Single-file checkpoints: reading their weights and the offline configs that load them.

A single-file checkpoint (`.safetensors`, or a trusted `.ckpt`) holds weights in the original
LDM/SGM layout and no configuration at all. diffusers converts such files with `from_single_file`
given a diffusers-style config folder, which normally comes from the hub. Nothing may come from a
hub here, so the plugin ships one folder per base in `configs/` (the values of the public
stable-diffusion-v1-5, stable-diffusion-2-1 and stable-diffusion-xl-base-1.0 configs) and the CLIP
BPE vocabulary (MIT, from OpenAI's CLIP via open_clip). On first use a complete folder is assembled
under `<models>/.configs/`: the template, the variant's overrides (a 9-channel UNet for inpainting,
the prediction type) and the tokenizer files written out from the vocabulary.

Each component reads only its own tensors from the file (a prompt node loads the text encoder
without touching the UNet's gigabytes), then diffusers' converters do the key mapping.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

from invokeai_core import InvokeAIError

SHIPPED = Path(__file__).parent / "configs"
VOCAB_FILE = SHIPPED / "bpe_simple_vocab_16e6.txt.gz"
PICKLE_SUFFIXES = frozenset({".ckpt", ".pt", ".pth", ".bin"})

# Where each component's tensors live in the original layout (SD 1.x/2.x and SDXL).
COMPONENT_PREFIXES: dict[str, tuple[str, ...]] = {
    "unet": ("model.diffusion_model.",),
    "vae": ("first_stage_model.", "vae."),
    "text_encoder": ("cond_stage_model.", "conditioner.embedders.0."),
    "text_encoder_2": ("conditioner.embedders.1.",),
}

INPAINT_PIPELINES = {
    "StableDiffusionPipeline": "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLInpaintPipeline",
}


class CheckpointError(InvokeAIError):
    """A checkpoint file cannot be read, or does not fit its config."""


# -- reading -------------------------------------------------------------------------------------
def _load_pickle(path: Path) -> dict[str, Any]:
    """The whole state dict of a pickle checkpoint (only ever called when pickles are allowed)."""
    import torch

    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:
        # Lightning checkpoints pickle training objects beside the weights; the user trusts this file.
        data = torch.load(str(path), map_location="cpu", weights_only=False)
    while isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: the pickle holds a {type(data).__name__}, not a state dict")
    return {k: v for k, v in data.items() if isinstance(k, str) and hasattr(v, "shape")}


def read_shapes(path: Path, *, allow_pickle: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, without loading a safetensors file's data."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickle(path, allow_pickle)
        return {k: tuple(v.shape) for k, v in _load_pickle(path).items()}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def read_component(path: Path, submodel: str, *, allow_pickle: bool) -> dict[str, Any]:
    """The tensors of one component (by key prefix), keys left in the original layout."""
    prefixes = COMPONENT_PREFIXES.get(submodel)
    if prefixes is None:
        raise CheckpointError(f"a checkpoint has no '{submodel}' weights")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickle(path, allow_pickle)
        weights = {k: v for k, v in _load_pickle(path).items() if k.startswith(prefixes)}
    else:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                weights = {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefixes)}
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if not weights:
        raise CheckpointError(f"{path}: the checkpoint holds no {submodel} weights (no keys under {prefixes[0]})")
    if submodel == "text_encoder":
        weights = _with_text_model_prefix(weights)
    return weights


def _with_text_model_prefix(weights: dict[str, Any]) -> dict[str, Any]:
    """Old SD 1.x checkpoints saved the CLIP text model without its `text_model.` level; add it back."""
    old = "cond_stage_model.transformer."
    if not any(k.startswith(old + "embeddings.") or k.startswith(old + "encoder.") for k in weights):
        return weights
    return {
        (old + "text_model." + k[len(old) :] if k.startswith(old) and not k.startswith(old + "text_model.") else k): v
        for k, v in weights.items()
    }


def _refuse_pickle(path: Path, allow_pickle: bool) -> None:
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: '{path.suffix}' checkpoints are Python pickles, which can run arbitrary code when loaded; "
            "convert it to .safetensors, or set plugins.diffusers.allow_pickle = true if you trust its source"
        )


# -- loading -------------------------------------------------------------------------------------
def load_component(cls: Any, submodel: str, weights: dict[str, Any], config_dir: Path, dtype: Any) -> Any:
    """Build `cls` from the config folder's `submodel` config and the checkpoint's weights."""
    import diffusers.utils.logging as diffusers_logging

    verbosity = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()  # "some weights were not used" is about EMA copies, position ids
    try:
        if hasattr(cls, "from_single_file"):
            model = cls.from_single_file(
                weights, config=str(config_dir), subfolder=submodel, local_files_only=True, dtype=dtype
            )
        else:
            from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm

            model = create_diffusers_clip_model_from_ldm(
                cls, weights, subfolder=submodel, config=str(config_dir), torch_dtype=dtype, local_files_only=True
            )
    finally:
        diffusers_logging.set_verbosity(verbosity)
    missing = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.device.type == "meta"]
    if missing:
        raise CheckpointError(
            f"the checkpoint has no weights for {len(missing)} {submodel} tensors (e.g. {missing[0]}); "
            "it does not match its config"
        )
    return model


# -- config folders ------------------------------------------------------------------------------
def shipped_config(base: str) -> Path:
    folder = SHIPPED / base
    if not (folder / "model_index.json").is_file():
        raise CheckpointError(f"no shipped config for base '{base}'")
    return folder


def config_folder(root: Path, base: str, variant: str, prediction_type: str | None) -> Path:
    """A complete diffusers config folder (no weights) for a checkpoint of this base and variant.

    Assembled once under `root` and reused; the folder name carries a digest of the shipped files,
    so a plugin upgrade that changes them assembles a fresh one.
    """
    template = shipped_config(base)
    digest = _template_digest(template)
    target = root / f"{base}-{variant}-{prediction_type or 'default'}-{digest}"
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=root))
    try:
        shutil.copytree(template, tmp, dirs_exist_ok=True)
        _apply_variant(tmp, variant, prediction_type)
        for tokenizer in sorted(p for p in tmp.iterdir() if p.name.startswith("tokenizer")):
            write_clip_vocab(tokenizer)
        try:
            os.replace(tmp, target)
        except OSError:  # another process assembled it first
            if not (target / "model_index.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@cache  # the shipped files do not change while the process runs; models load on every node run
def _template_digest(template: Path) -> str:
    digest = hashlib.blake2b(digest_size=4)
    for file in sorted(p for p in template.rglob("*") if p.is_file()):
        digest.update(file.relative_to(template).as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _edit_json(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _apply_variant(folder: Path, variant: str, prediction_type: str | None) -> None:
    index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    if variant == "inpaint":
        _edit_json(folder / "unet" / "config.json", in_channels=9)
        pipeline = INPAINT_PIPELINES.get(index["_class_name"], index["_class_name"])
        extra = {"requires_aesthetics_score": False} if "XL" in pipeline else {}
        _edit_json(folder / "model_index.json", _class_name=pipeline, **extra)
        if prediction_type is None:
            prediction_type = "epsilon"  # every published SD inpainting model predicts noise
    if prediction_type is not None:
        _edit_json(folder / "scheduler" / "scheduler_config.json", prediction_type=prediction_type)


@cache
def clip_vocab() -> tuple[dict[str, int], list[str]]:
    """CLIP's BPE vocabulary (49,408 tokens) and merges, built the way CLIP builds them."""
    from invokeai_diffusers.models.demo import bytes_to_unicode

    with gzip.open(VOCAB_FILE, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    chars = bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def write_clip_vocab(folder: Path) -> None:
    """`vocab.json` and `merges.txt` as in the published CLIP tokenizer folders."""
    vocab, merges = clip_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


# -- FLUX.1 and SD3.5 single files ----------------------------------------------------------------
# A FLUX.1 file (as Black Forest Labs publish them) holds the transformer alone, bare or under
# `model.diffusion_model.`; SD3.5 files hold the MMDiT under `model.diffusion_model.` and often the
# VAE (`first_stage_model.`) and text encoders (`text_encoders.`). The text encoders and the T5
# tokenizer (a sentencepiece model) cannot come from the plugin, so such a file installs with
# `--config DIR`: a diffusers folder of the same model (its model_index.json, component configs,
# and the weights of the components the file lacks). The transformer, and a VAE the file holds,
# are read from the file and converted by diffusers' `from_single_file` with that folder's configs.
FLOW_OTHER_PREFIXES = ("first_stage_model.", "vae.", "text_encoders.", "conditioner.", "cond_stage_model.")
FLOW_PIPELINES = {"flux": ("FluxPipeline", "FluxImg2ImgPipeline"), "sd-3": ("StableDiffusion3Pipeline",)}


def read_flow_component(path: Path, submodel: str, *, allow_pickle: bool) -> dict[str, Any] | None:
    """The file's tensors of `transformer` (everything but the other components' prefixes) or `vae`
    (`first_stage_model.`/`vae.`); None when the file has none (they come from the config folder)."""
    if submodel not in ("transformer", "vae"):
        return None

    def wanted(key: str) -> bool:
        if submodel == "vae":
            return key.startswith(("first_stage_model.", "vae."))
        return not key.startswith(FLOW_OTHER_PREFIXES)

    if path.suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickle(path, allow_pickle)
        weights = {k: v for k, v in _load_pickle(path).items() if wanted(k)}
    else:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                weights = {k: f.get_tensor(k) for k in f.keys() if wanted(k)}
        except Exception as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if submodel == "vae" and weights and not any(k.startswith("first_stage_model.") for k in weights):
        weights = {"first_stage_model." + k[len("vae.") :]: v for k, v in weights.items()}
    return weights or None


def check_flow_config(source: Path, base: str, variant: str, config: Path | None) -> None:
    """A FLUX.1/SD3.5 file installs only with a `--config` diffusers folder of the same base (and,
    for FLUX, the same dev/schnell variant: guidance embeddings in the file and the config alike)."""
    name = "FLUX.1" if base == "flux" else "SD3.5"
    if config is None:
        raise CheckpointError(
            f"{source}: a {name} single file holds the transformer, not the text encoders and the T5 tokenizer, "
            f"which nothing may download: pass --config DIR, a diffusers {name} folder of the same model "
            "(its configs, tokenizers and text encoder weights are used; its transformer is not loaded)"
        )
    try:
        index = json.loads((config / "model_index.json").read_text(encoding="utf-8"))
        transformer = json.loads((config / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"--config {config}: not a diffusers {name} folder ({e})") from None
    if index.get("_class_name") not in FLOW_PIPELINES[base]:
        raise CheckpointError(
            f"--config {config}: a {index.get('_class_name')} folder; this {name} file needs a "
            f"{' or '.join(FLOW_PIPELINES[base])} folder"
        )
    if base == "flux" and bool(transformer.get("guidance_embeds")) != (variant == "dev"):
        have = "dev" if transformer.get("guidance_embeds") else "schnell"
        raise CheckpointError(f"{source}: a FLUX.1 {variant} file, but --config {config} is a {have} model")

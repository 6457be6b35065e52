"""Probing ControlNet and T2I-Adapter models (a diffusers folder, or a ControlNet single file).

A diffusers ControlNet or T2I-Adapter folder has no `model_index.json`: one `config.json` whose
`_class_name` is `ControlNetModel` or `T2IAdapter`, beside the weights. The base comes from the
config keys diffusers writes:

* ControlNet: `addition_embed_type == "text_time"` (SDXL's time/size embedding, which SDXL
  ControlNets copy from their UNet) or a `cross_attention_dim` of 2048 means sdxl; 1024 means sd-2;
  anything else sd-1 (768 for real models; test-size models use other widths).
* T2I-Adapter: `adapter_type == "full_adapter_xl"` means sdxl; `full_adapter` / `light_adapter`
  are the SD 1.x ones (an SD 2.x adapter has the same shapes and cannot be told apart; it is recorded
  as sd-1).

A single-file ControlNet (`control_model.*` keys of the original release, or a diffusers-layout
state dict) is recognised by its keys, but its config cannot be derived offline: the model
manager refuses it unless `--config DIR` names the ControlNet's diffusers folder (a `config.json`
is enough), and then loads it with `ControlNetModel.from_single_file(path, config=DIR)`. T2I-Adapter
single files are refused (diffusers has no single-file loader for them).
"""

from __future__ import annotations

from pathlib import Path

from invokeai_diffusers.models.probe import ModelProbeError, ProbeResult

#: config `_class_name` -> model type
CONTROL_CLASSES = {"ControlNetModel": "controlnet", "T2IAdapter": "t2i_adapter"}
#: model type -> (the diffusers class, what the user calls it)
CONTROL_TYPES = {"controlnet": ("ControlNetModel", "ControlNet"), "t2i_adapter": ("T2IAdapter", "T2I-Adapter")}
WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def probe_control_folder(path: Path, config: dict[str, object]) -> ProbeResult:
    class_name = str(config.get("_class_name", ""))
    kind = CONTROL_CLASSES.get(class_name)
    if kind is None:
        raise ModelProbeError(
            f"{path}: not a diffusers model folder (no model_index.json, and config.json's _class_name "
            f"{class_name or '(none)'!r} is not ControlNetModel or T2IAdapter)"
        )
    if not any((path / w).is_file() for w in WEIGHTS):
        raise ModelProbeError(f"{path}: a {class_name} config without weights (no {WEIGHTS[0]})")
    return ProbeResult(base=control_base(config), variant="normal", format="diffusers", type=kind)


def control_base(config: dict[str, object]) -> str:
    """The base of a ControlNet or T2I-Adapter from its diffusers config (see the module docstring)."""
    if config.get("_class_name") == "T2IAdapter":
        return "sdxl" if config.get("adapter_type") == "full_adapter_xl" else "sd-1"
    cross = config.get("cross_attention_dim")
    if config.get("addition_embed_type") == "text_time" or cross == 2048:
        return "sdxl"
    return "sd-2" if cross == 1024 else "sd-1"


def control_checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> ProbeResult | None:
    """A ControlNet single file by its keys (None if it is not one); T2I-Adapter files are refused."""
    keys = list(shapes)
    original = any(k.startswith("control_model.") for k in keys) or (
        any(k.startswith("input_hint_block.") for k in keys) and any(k.startswith("zero_convs.") for k in keys)
    )
    diffusers_layout = "controlnet_cond_embedding.conv_in.weight" in shapes
    if not (original or diffusers_layout):
        if any(k.startswith(("adapter.body.", "adapter.conv_in.", "body.0.resnets.")) for k in keys):
            raise ModelProbeError(
                f"{path}: a T2I-Adapter single file; diffusers cannot load these without conversion: "
                "install the adapter's diffusers folder (config.json and diffusion_pytorch_model.safetensors)"
            )
        return None
    sdxl = any(k.endswith(("label_emb.0.0.weight", "add_embedding.linear_1.weight")) for k in keys)
    cross = next((s[1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight") and len(s) == 2), None)
    base = "sdxl" if sdxl or cross == 2048 else ("sd-2" if cross == 1024 else "sd-1")
    return ProbeResult(base=base, variant="normal", format="checkpoint", type="controlnet", cross_attention_dim=cross)


def check_control_config(source: Path, found: ProbeResult, config: Path | None) -> None:
    """A ControlNet single file needs `--config DIR`, a ControlNet diffusers folder of its architecture."""
    from invokeai_diffusers.models.probe import _read_json

    if config is None:
        raise ModelProbeError(
            f"{source}: a single-file ControlNet needs its diffusers config: pass --config DIR, a ControlNet "
            "diffusers folder of the same architecture (its config.json is enough), or install the diffusers "
            "folder itself"
        )
    data = _read_json(config / "config.json") if (config / "config.json").is_file() else {}
    if data.get("_class_name") != "ControlNetModel":
        raise ModelProbeError(
            f"--config {config}: not a ControlNet config folder (no config.json of a ControlNetModel)"
        )
    want = data.get("cross_attention_dim")
    if found.cross_attention_dim is not None and found.cross_attention_dim != want:
        raise ModelProbeError(
            f"{source}: its cross-attention is {found.cross_attention_dim} wide, the config {config} says {want}"
        )
    if control_base(data) != found.base:
        raise ModelProbeError(f"{source}: a {found.base} ControlNet, the config {config} is for {control_base(data)}")

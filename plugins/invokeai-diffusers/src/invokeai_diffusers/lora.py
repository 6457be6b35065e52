"""LoRA adapters, applied unfused the way diffusers applies them (peft layers, `set_adapters` weights).

A LoRA is an installed model of type `lora` (one .safetensors file). Its state dict is read once
into the model cache by diffusers' own `lora_state_dict` (which converts kohya and other layouts
and returns the adapter metadata saved with the file), keyed like any component, so using a LoRA
never reloads the base model. For one pipeline call, `applied` injects the LoRAs into the cached
UNet / text encoders as peft adapters (`load_lora_into_unet` / `load_lora_into_text_encoder`, the
calls `load_lora_weights` makes), sets their weights (what `set_adapters` does per component), and
afterwards removes the peft layers (what `unload_lora_weights` does). Unfused, the base weights are
never touched, so removing the adapters restores the cached module exactly; fusing would differ
from diffusers' unfused outputs (about 1e-5) and would not undo bit-exactly.

The cached modules are shared between sessions, so every use of a UNet or text encoder goes
through `applied` (with or without LoRAs) under one lock: a run never sees another run's adapters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core import InvokeAIError

if TYPE_CHECKING:
    from invokeai_diffusers.fields import LoRAField

#: held while cached modules run (with their adapters injected, if any)
MODULES_LOCK = threading.RLock()

#: component -> the prefix of its keys in a diffusers LoRA file
PREFIXES = {"unet": "unet", "text_encoder": "text_encoder", "text_encoder_2": "text_encoder_2"}


class LoRAError(InvokeAIError):
    """A LoRA cannot be read or applied (the message says why)."""


def pipeline_class(base: str) -> Any:
    import diffusers

    return diffusers.StableDiffusionXLPipeline if base == "sdxl" else diffusers.StableDiffusionPipeline


def read_lora(path: Path, base: str) -> tuple[dict[str, Any], Any, Any]:
    """(state dict, network alphas, adapter metadata), as `load_lora_weights` reads a file."""
    try:
        state_dict, alphas, metadata = pipeline_class(base).lora_state_dict(str(path), return_lora_metadata=True)
    except Exception as e:
        raise LoRAError(f"{path}: not a readable LoRA ({type(e).__name__}: {e})") from None
    if not state_dict or not all("lora" in key for key in state_dict):
        raise LoRAError(f"{path}: not a LoRA (its keys are not LoRA factors)")
    return state_dict, alphas, metadata


@contextmanager
def applied(base: str, parts: dict[str, tuple[Any, list[tuple[LoRAField, Any]]]]) -> Iterator[None]:
    """Inject LoRAs into cached modules for the duration of the block.

    `parts`: component name ("unet", "text_encoder", "text_encoder_2") -> (module, [(LoRAField,
    loaded (state dict, alphas, metadata)), ...]) in the order the LoRAs were chained.
    """
    with MODULES_LOCK:
        touched: list[tuple[str, Any]] = []
        try:
            for component, (module, loras) in parts.items():
                if not loras:
                    continue
                touched.append((component, module))
                _load_into(base, component, module, loras)
            yield
        finally:
            for component, module in touched:
                _remove(component, module)


def _load_into(base: str, component: str, module: Any, loras: list[tuple[LoRAField, Any]]) -> None:
    from diffusers.loaders.lora_base import set_adapters_for_text_encoder

    cls = pipeline_class(base)
    names: list[str] = []
    weights: list[float] = []
    seen: set[str] = set()
    for index, (lora, (state_dict, alphas, metadata)) in enumerate(loras):
        name = f"invokeai_lora_{index}"  # by position: model names may hold '.', which peft cannot
        if lora.name in seen:
            raise LoRAError(f"LoRA '{lora.name}' is applied twice to the {component}")
        seen.add(lora.name)
        has_keys = any(k.startswith(PREFIXES[component] + ".") for k in state_dict)
        if not has_keys:
            continue
        try:
            if component == "unet":
                cls.load_lora_into_unet(
                    dict(state_dict), network_alphas=alphas, unet=module, adapter_name=name, metadata=metadata
                )
            else:
                cls.load_lora_into_text_encoder(
                    dict(state_dict),
                    network_alphas=alphas,
                    text_encoder=module,
                    prefix=PREFIXES[component],
                    lora_scale=1.0,
                    adapter_name=name,
                    metadata=metadata,
                )
        except Exception as e:
            raise LoRAError(f"LoRA '{lora.name}' does not fit the {component}: {type(e).__name__}: {e}") from None
        names.append(name)
        weights.append(lora.weight)
    if not names:
        return
    if component == "unet":
        module.set_adapters(names, weights)
    else:
        set_adapters_for_text_encoder(names, module, weights)


def _remove(component: str, module: Any) -> None:
    """What `unload_lora_weights` does: the peft layers go, the original layers come back."""
    if component == "unet":
        module.unload_lora()
    else:
        from diffusers.loaders.lora_base import _remove_text_encoder_monkey_patch

        _remove_text_encoder_monkey_patch(module)

"""IP-Adapters (SD 1.x/2.x/XL): an image as a prompt, applied the way diffusers' `load_ip_adapter` does.

An IP-Adapter is an installed model of type `ip_adapter`: one .safetensors file in the layout
`load_ip_adapter` reads (`image_proj.*` and `ip_adapter.*` keys) with its CLIP image encoder
(a `CLIPVisionModelWithProjection` folder) in `image_encoder/` beside it, the layout of h94/IP-Adapter
(`models/ip-adapter_sd15.safetensors` + `models/image_encoder/`). Both are read once into the cache.

For one denoise, `applied` does what `load_ip_adapter` + `set_ip_adapter_scale` do to a pipeline,
on the transient pipeline our denoise assembles: it registers the cached image encoder and a
`CLIPImageProcessor` sized like `load_ip_adapter` makes it, loads the adapters' weights into the
cached UNet with diffusers' own `_load_ip_adapter_weights` (new attention processors and the
`encoder_hid_proj` image projection), sets each adapter's weight, and hands the images to the
pipeline as `ip_adapter_image`, so the pipeline encodes and projects them itself. `begin/end step
percent` switch an adapter's scale to 0 outside its steps, from `callback_on_step_end` through
`set_ip_adapter_scale` (active at step i iff begin <= i / n < end, n = the pipeline's `num_timesteps`,
the steps it actually runs). Afterwards the UNet gets its original attention processor objects,
`encoder_hid_proj` and `encoder_hid_dim_type` back, under the modules lock, like LoRAs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core import InvokeAIError

if TYPE_CHECKING:
    from invokeai_diffusers.fields import IPAdapterField

PREFIXES = ("image_proj.", "ip_adapter.")
IMAGE_ENCODER = "image_encoder"


class IPAdapterError(InvokeAIError):
    """An IP-Adapter cannot be read or applied (the message says why)."""


def is_ip_adapter(keys: list[str]) -> bool:
    """diffusers' test in `load_ip_adapter`: `image_proj` and `ip_adapter` keys (and nothing else)."""
    return (
        bool(keys)
        and all(k.startswith(PREFIXES) for k in keys)
        and any(k.startswith("image_proj.") for k in keys)
        and any(k.startswith("ip_adapter.") for k in keys)
    )


def cross_attention_dim(shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The text width the adapter's keys and values take (`to_k_ip` is Linear(cross, hidden))."""
    for key, shape in shapes.items():
        if key.startswith("ip_adapter.") and key.endswith(".to_k_ip.weight") and len(shape) == 2:
            return int(shape[1])
    return None


def ip_adapter_base(shapes: dict[str, tuple[int, ...]]) -> str:
    """2048 wide: SDXL; 1024: SD 2.x; else SD 1.x (768; other widths, like the test models', are
    checked against the UNet when applied)."""
    width = cross_attention_dim(shapes)
    return "sdxl" if width == 2048 else "sd-2" if width == 1024 else "sd-1"


def image_encoder_folder(path: Path) -> Path:
    return path.parent / IMAGE_ENCODER


def read_ip_adapter(path: Path) -> dict[str, dict[str, Any]]:
    """`{"image_proj": {...}, "ip_adapter": {...}}`, read as `load_ip_adapter` reads a .safetensors file."""
    from safetensors import safe_open

    state_dict: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                if key.startswith("image_proj."):
                    state_dict["image_proj"][key.replace("image_proj.", "")] = f.get_tensor(key)
                elif key.startswith("ip_adapter."):
                    state_dict["ip_adapter"][key.replace("ip_adapter.", "")] = f.get_tensor(key)
    except Exception as e:
        raise IPAdapterError(f"{path}: not a readable safetensors file ({e})") from None
    if not state_dict["image_proj"] or not state_dict["ip_adapter"]:
        raise IPAdapterError(f"{path}: not an IP-Adapter (no image_proj and ip_adapter keys)")
    return state_dict


def check_fits(name: str, state_dict: dict[str, dict[str, Any]], unet: Any) -> None:
    """The adapter's keys/values must take the UNet's text width, and it must have one per cross-attention."""
    width = cross_attention_dim({"ip_adapter." + k: tuple(v.shape) for k, v in state_dict["ip_adapter"].items()})
    want = unet.config.cross_attention_dim
    if width != want:
        raise IPAdapterError(f"IP-Adapter '{name}' takes text {width} wide, the UNet {want} (made for another base)")
    layers = sum(1 for n in unet.attn_processors if not n.endswith("attn1.processor"))
    have = sum(1 for k in state_dict["ip_adapter"] if k.endswith(".to_k_ip.weight"))
    if have != layers:
        raise IPAdapterError(f"IP-Adapter '{name}' has {have} cross-attention layers, the UNet {layers}")


def is_active(field: IPAdapterField, step: int, total: int) -> bool:
    """Whether the adapter acts at step `step` of `total`: begin <= step / total < end."""
    return field.begin_step_percent <= step / total < field.end_step_percent


@contextmanager
def applied(
    pipe: Any,
    adapters: list[tuple[IPAdapterField, dict[str, dict[str, Any]], Any]],
    image_encoder: Any,
    call: dict[str, Any],
) -> Iterator[None]:
    """Load `(field, state dict, PIL image)` adapters into `pipe` for the block; `call` (the pipeline
    call's kwargs) gets `ip_adapter_image` and a `callback_on_step_end` that also switches scales."""
    if not adapters:
        yield
        return
    from transformers import CLIPImageProcessor

    from invokeai_diffusers.lora import MODULES_LOCK

    unet = pipe.unet
    with MODULES_LOCK:
        processors = dict(unet.attn_processors)
        hid_proj = unet.encoder_hid_proj
        hid_type = unet.config.encoder_hid_dim_type
        try:
            size = image_encoder.config.image_size
            pipe.register_modules(
                image_encoder=image_encoder, feature_extractor=CLIPImageProcessor(size=size, crop_size=size)
            )
            unet._load_ip_adapter_weights([state for _, state, _ in adapters])
            fields = [field for field, _, _ in adapters]
            inner = call.get("callback_on_step_end")

            def scales(step: int, total: int) -> list[float]:
                return [f.weight if is_active(f, step, total) else 0.0 for f in fields]

            pipe.set_ip_adapter_scale(scales(0, 1))  # step 0 of any count: active iff begin == 0 < end

            def callback(p: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                if inner is not None:
                    kwargs = inner(p, step, timestep, kwargs)
                p.set_ip_adapter_scale(scales(step + 1, p.num_timesteps))
                return kwargs

            call["callback_on_step_end"] = callback
            call["ip_adapter_image"] = [image for _, _, image in adapters]
            yield
        finally:
            unet.set_attn_processor(processors)
            unet.encoder_hid_proj = hid_proj
            unet.config.encoder_hid_dim_type = hid_type
            call.pop("ip_adapter_image", None)

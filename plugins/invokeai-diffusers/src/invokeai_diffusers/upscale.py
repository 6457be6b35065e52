"""Image upscalers (ESRGAN, Real-ESRGAN, SwinIR, ... any single-image model spandrel recognises).

An upscaler is an installed model of type `upscaler`: one .safetensors file (or a pickle `.pth` /
`.pt` / `.ckpt` when pickles are allowed) whose state dict spandrel's `ModelLoader` recognises; the
architecture and scale come from the keys and shapes, never from a config.

spandrel 0.4.x declares torchvision a dependency and imports it at import time for two of its
architectures (LaMa's `rotate`, RestoreFormer's `normalize`), but no PyPI torchvision imports beside
the pinned torch, so it is installed with `--no-deps` and `import_spandrel` lends it a stand-in
`torchvision` for the duration of that one import (only when no torchvision is installed). The
stand-in is removed again at once, so nothing else ever sees it; those two architectures raise
`UpscaleError` if actually run, every other one (the ESRGAN family, SwinIR, DAT, ...) is untouched.

Tiling (`tile_size` > 0) cuts the image into overlapping tiles (stride `tile_size - tile_overlap`,
the last tile flush with the edge), upscales each, and blends them with linear ramps across each
interior overlap (weights `(i + 1) / (fade + 1)`, `fade = tile_overlap * scale`, multiplied along
both axes), dividing the weighted sum by the summed weights. Tiles never cross the image border.
A tiled result is not bit-equal to the untiled one (convolutions near a tile's edge see padding,
not neighbours); the tests compare it to an independent implementation of the same blend.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from invokeai_core import InvokeAIError

_IMPORT_LOCK = threading.Lock()
_STAND_IN = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


class UpscaleError(InvokeAIError):
    """An upscaler cannot be read or run (the message says why)."""


def _needs_torchvision(*args: Any, **kwargs: Any) -> Any:
    raise UpscaleError("this spandrel architecture needs torchvision, which is not installed here")


def import_spandrel() -> Any:
    """`import spandrel`, lending it a stand-in torchvision when none is installed (see the module doc)."""
    with _IMPORT_LOCK:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"]
        if importlib.util.find_spec("torchvision") is not None:
            import spandrel

            return spandrel
        lent: dict[str, types.ModuleType] = {}
        for name in _STAND_IN:
            if name not in sys.modules:
                lent[name] = types.ModuleType(name, "invokeai-diffusers' stand-in while spandrel imports")
        root = lent.get("torchvision")
        transforms = lent.get("torchvision.transforms")
        functional = lent.get("torchvision.transforms.functional")
        if root is not None and transforms is not None and functional is not None:
            root.transforms = transforms  # type: ignore[attr-defined]
            transforms.functional = functional  # type: ignore[attr-defined]
            functional.InterpolationMode = types.SimpleNamespace(  # type: ignore[attr-defined]
                NEAREST="nearest", BILINEAR="bilinear", BICUBIC="bicubic"
            )
            functional.rotate = _needs_torchvision  # type: ignore[attr-defined]
            functional.normalize = _needs_torchvision  # type: ignore[attr-defined]
        sys.modules.update(lent)
        try:
            import spandrel

            return spandrel
        except ImportError as e:
            raise UpscaleError(f"spandrel is not importable ({e}); see the plugin's README (upscalers)") from None
        finally:
            for name, module in lent.items():
                if sys.modules.get(name) is module:
                    del sys.modules[name]


def read_state_dict(path: Path, *, allow_pickle: bool) -> dict[str, Any]:
    """A model file's tensors; pickles are refused unless allowed (they can run code when loaded)."""
    from invokeai_diffusers.models.single_file import PICKLE_SUFFIXES

    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UpscaleError(
                f"{path}: '{path.suffix}' files are Python pickles, which can run arbitrary code when loaded; "
                "convert it to .safetensors, or set plugins.diffusers.allow_pickle = true if you trust its source"
            )
        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as e:
            raise UpscaleError(f"{path}: not a readable state dict ({type(e).__name__}: {e})") from None
        for key in ("params_ema", "params", "state_dict"):  # BasicSR / Lightning wrappers
            if isinstance(data, dict) and isinstance(data.get(key), dict):
                data = data[key]
    else:
        from safetensors.torch import load_file

        try:
            data = load_file(str(path), device="cpu")
        except Exception as e:
            raise UpscaleError(f"{path}: not a readable safetensors file ({e})") from None
    if not isinstance(data, dict):
        raise UpscaleError(f"{path}: holds a {type(data).__name__}, not a state dict")
    return {k: v for k, v in data.items() if isinstance(k, str) and hasattr(v, "shape")}


def describe(state_dict: dict[str, Any], path: Path) -> Any:
    """spandrel's `ImageModelDescriptor` for a state dict (an `UpscaleError` for anything else)."""
    spandrel = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise UpscaleError(f"{path}: not an architecture spandrel knows") from None
    except Exception as e:
        raise UpscaleError(f"{path}: spandrel cannot load it ({type(e).__name__}: {e})") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscaleError(f"{path}: a {descriptor.architecture.name} model is not a single-image model")
    return descriptor


def probe_upscaler(path: Path, shapes: dict[str, tuple[int, ...]], *, allow_pickle: bool) -> str | None:
    """The architecture name if the file is an upscaler spandrel recognises, else None. Only called
    for files that are no Stable Diffusion checkpoint, LoRA or embedding; spandrel needs the tensors."""
    if not shapes:
        return None
    try:
        return str(describe(read_state_dict(path, allow_pickle=allow_pickle), path).architecture.name)
    except UpscaleError:
        return None


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Where tiles start along one axis: every `tile - overlap` pixels, the last flush with the edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, tile - overlap))
    starts.append(size - tile)
    return starts


def ramp(length: int, fade: int, *, at_start: bool, at_end: bool) -> Any:
    """Blend weights along one axis of a tile: 1, ramping down linearly over `fade` pixels at each
    edge that meets another tile (`at_start`/`at_end`), never 0."""
    import torch

    weights = torch.ones(length, dtype=torch.float32)
    fade = min(fade, length)
    if fade > 0:
        rising = (torch.arange(fade, dtype=torch.float32) + 1) / (fade + 1)
        if at_start:
            weights[:fade] = torch.minimum(weights[:fade], rising)
        if at_end:
            weights[length - fade :] = torch.minimum(weights[length - fade :], rising.flip(0))
    return weights


def upscale(
    descriptor: Any,
    image: Any,
    *,
    tile_size: int,
    tile_overlap: int,
    on_tile: Callable[[int, int], None] | None = None,
) -> Any:
    """Upscale a (1, C, H, W) tensor in [0, 1]: whole (`tile_size` 0) or tiled and blended.

    `on_tile(done, total)` runs after each tile (progress, cancellation)."""
    import torch

    if tile_size <= 0:
        out = descriptor(image)
        if on_tile is not None:
            on_tile(1, 1)
        return out
    scale = int(descriptor.scale)
    _, _, height, width = image.shape
    ys = tile_starts(height, tile_size, tile_overlap)
    xs = tile_starts(width, tile_size, tile_overlap)
    channels = int(descriptor.output_channels)
    total = torch.zeros((1, channels, height * scale, width * scale), dtype=torch.float32, device=image.device)
    weight_sum = torch.zeros((1, 1, height * scale, width * scale), dtype=torch.float32, device=image.device)
    fade = tile_overlap * scale
    done = 0
    for y in ys:
        th = min(tile_size, height - y)
        wy = ramp(th * scale, fade, at_start=y > 0, at_end=y + th < height).to(image.device)
        for x in xs:
            tw = min(tile_size, width - x)
            wx = ramp(tw * scale, fade, at_start=x > 0, at_end=x + tw < width).to(image.device)
            out = descriptor(image[:, :, y : y + th, x : x + tw]).float()
            weights = wy[:, None] * wx[None, :]
            region = (slice(None), slice(None), slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale))
            total[region] += out * weights
            weight_sum[region] += weights
            done += 1
            if on_tile is not None:
                on_tile(done, len(ys) * len(xs))
    return (total / weight_sum).clamp_(0, 1)


def to_tensor(pil: Any, channels: int) -> Any:
    """A PIL image as a (1, C, H, W) float32 tensor in [0, 1] (RGB, or grayscale for 1-channel models)."""
    import numpy as np
    import torch

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    array = np.asarray(pil.convert(mode), dtype=np.float32) / 255.0
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_pil(tensor: Any) -> Any:
    """A (1, C, H, W) tensor in [0, 1] as an 8-bit PIL image (rounded to nearest)."""
    import torch
    from PIL import Image

    array = (tensor[0].float().clamp(0, 1) * 255).round().to(dtype=torch.uint8)
    array = array.permute(1, 2, 0).cpu().numpy()
    if array.shape[2] == 1:
        return Image.fromarray(array[:, :, 0], mode="L")
    return Image.fromarray(array, mode="RGBA" if array.shape[2] == 4 else "RGB")

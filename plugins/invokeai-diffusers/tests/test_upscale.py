"""Upscalers: spandrel models installed by probing their state dict, run by the `upscale_image` node.

The model is spandrel's own ESRGAN (RRDBNet) built with random weights and a few filters, saved in
its real key layout (`model.0.weight`, `model.1.sub.0.RDB1...`) as .safetensors (and as a .pth
pickle); the probe must recognise it with nothing but the file. The references are computed here:
the untiled output is spandrel's descriptor (loaded independently from the file) called on the
image tensor, which is the RRDBNet module's own output clamped; the tiled output is an independent
implementation of the documented blend (per-pixel weights written out here).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

W, H = 28, 20  # not multiples of anything: the edge tiles are smaller and shifted


@pytest.fixture(scope="session")
def upscaler_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch
    from invokeai_diffusers.upscale import import_spandrel
    from safetensors.torch import save_file

    import_spandrel()  # spandrel imports torchvision at import time; see upscale.py
    from spandrel.architectures.ESRGAN import ESRGAN

    base = tmp_path_factory.mktemp("upscalers")
    torch.manual_seed(5)
    x2 = ESRGAN(num_filters=8, num_blocks=1, scale=2)
    torch.manual_seed(6)
    x4 = ESRGAN(num_filters=8, num_blocks=1, scale=4)
    files = {"esrgan-x2": base / "esrgan-x2.safetensors", "esrgan-x4": base / "esrgan-x4.safetensors"}
    save_file({k: v.contiguous() for k, v in x2.state_dict().items()}, str(files["esrgan-x2"]))
    save_file({k: v.contiguous() for k, v in x4.state_dict().items()}, str(files["esrgan-x4"]))
    files["pickled"] = base / "pickled.pth"
    torch.save(x2.state_dict(), str(files["pickled"]))
    return files


@pytest.fixture
def source(invokeai_invoker: Any) -> tuple[Any, Any]:
    from PIL import Image

    rng = np.random.default_rng(3)
    pil = Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), mode="RGB")
    return pil, invokeai_invoker.services.image_service.create(pil).field


def _graph(model: str, image: Any, **fields: Any) -> dict[str, Any]:
    node = {"id": "u", "type": "upscale_image", "model": model, "image": image.model_dump(), **fields}
    return {"nodes": {"u": node}, "edges": []}


def _reference_descriptor(path: Path) -> Any:
    from safetensors.torch import load_file

    spandrel = sys.modules["spandrel"]
    descriptor = spandrel.ModelLoader().load_from_state_dict(load_file(str(path)))
    descriptor.eval()
    return descriptor


def _as_tensor(pil: Any) -> Any:
    import torch

    return torch.tensor(np.asarray(pil), dtype=torch.float32).permute(2, 0, 1)[None] / 255


def _as_uint8(tensor: Any) -> Any:
    import torch

    return (tensor[0].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _ours(invokeai_invoker: Any, run: Any) -> Any:
    assert run.status == "completed", run.errors
    return np.asarray(invokeai_invoker.services.image_service.get_pil(run["u"].image.image_name))


def _tiled_reference(descriptor: Any, image: Any, tile: int, overlap: int) -> Any:
    """The blend the node documents, written independently: for each tile, a weight per output
    pixel = product over both axes of min(1, distance to each interior tile edge / (fade + 1))."""
    import torch

    scale = descriptor.scale
    _, _, height, width = image.shape

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        out, at = [], 0
        while at < size - tile:
            out.append(at)
            at += tile - overlap
        return [*out, size - tile]

    def axis_weights(start: int, length: int, size: int) -> Any:
        fade = overlap * scale
        n = length * scale
        weights = torch.ones(n, dtype=torch.float32)
        for p in range(n):
            if start > 0 and p < fade:
                weights[p] = torch.minimum(weights[p], torch.tensor(p + 1.0) / (fade + 1))
            if start + length < size and p >= n - fade:
                weights[p] = torch.minimum(weights[p], torch.tensor(float(n - p)) / (fade + 1))
        return weights

    acc = torch.zeros((1, 3, height * scale, width * scale))
    norm = torch.zeros((1, 1, height * scale, width * scale))
    for y in starts(height):
        for x in starts(width):
            th, tw = min(tile, height - y), min(tile, width - x)
            weights = axis_weights(y, th, height)[:, None] * axis_weights(x, tw, width)[None, :]
            out = descriptor(image[:, :, y : y + th, x : x + tw])
            ys, xs = slice(y * scale, (y + th) * scale), slice(x * scale, (x + tw) * scale)
            acc[:, :, ys, xs] += out * weights
            norm[:, :, ys, xs] += weights
    return acc / norm


@pytest.fixture
def with_upscalers(manager: Any, upscaler_files: dict[str, Path]) -> Any:
    manager.add(upscaler_files["esrgan-x2"])
    manager.add(upscaler_files["esrgan-x4"])
    return manager


@pytest.mark.parametrize("model", ["esrgan-x2", "esrgan-x4"])
def test_untiled_output_equals_the_spandrel_model_called_directly(
    model: str, with_upscalers: Any, invokeai_invoker: Any, invokeai_run_graph: Any, upscaler_files: Any, source: Any
) -> None:
    import torch

    pil, field = source
    ours = _ours(invokeai_invoker, invokeai_run_graph(_graph(model, field, tile_size=0)))
    descriptor = _reference_descriptor(upscaler_files[model])
    image = _as_tensor(pil)
    expected = descriptor(image)
    with torch.no_grad():
        assert torch.equal(expected, descriptor.model(image).clamp(0, 1))  # the descriptor adds only the clamp
    scale = int(model[-1])
    assert ours.shape == (H * scale, W * scale, 3)
    assert np.array_equal(ours, _as_uint8(expected))


@pytest.mark.parametrize(("tile", "overlap"), [(8, 2), (12, 4), (10, 0)])
def test_tiled_output_equals_an_independent_tiled_reference(
    tile: int,
    overlap: int,
    with_upscalers: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    upscaler_files: Any,
    source: Any,
) -> None:
    pil, field = source
    run = invokeai_run_graph(_graph("esrgan-x2", field, tile_size=tile, tile_overlap=overlap))
    ours = _ours(invokeai_invoker, run)
    descriptor = _reference_descriptor(upscaler_files["esrgan-x2"])
    expected = _as_uint8(_tiled_reference(descriptor, _as_tensor(pil), tile, overlap))
    assert np.array_equal(ours, expected)
    untiled = _as_uint8(descriptor(_as_tensor(pil)))
    assert not np.array_equal(ours, untiled)  # the seams differ (the receptive field crosses them)


def test_a_tile_as_large_as_the_image_is_the_untiled_result(
    with_upscalers: Any, invokeai_invoker: Any, invokeai_run_graph: Any, source: Any
) -> None:
    _, field = source
    whole = _ours(invokeai_invoker, invokeai_run_graph(_graph("esrgan-x2", field, tile_size=0)))
    one_tile = _ours(invokeai_invoker, invokeai_run_graph(_graph("esrgan-x2", field, tile_size=64, tile_overlap=8)))
    assert np.array_equal(whole, one_tile)


def test_upscalers_are_probed_loaded_once_and_load_no_base_model(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any, upscaler_files: Any, source: Any
) -> None:
    import importlib.util

    from invokeai_diffusers.models.manager import ModelInstallError

    record = manager.add(upscaler_files["esrgan-x2"])
    assert (record.name, record.type, record.base, record.format) == ("esrgan-x2", "upscaler", "any", "spandrel")
    with pytest.raises(ModelInstallError, match="pickle"):
        manager.add(upscaler_files["pickled"])
    events: list[Any] = []
    invokeai_invoker.services.events.subscribe(events.append, names=["model_load_started"])
    _, field = source
    for _ in range(2):
        assert invokeai_run_graph(_graph("esrgan-x2", field, tile_size=16, tile_overlap=4)).status == "completed"
    assert [(e.model_name, e.submodel) for e in events] == [("esrgan-x2", "upscaler")]
    assert "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None


def test_a_pickled_upscaler_works_when_pickles_are_allowed(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any, upscaler_files: Any, source: Any
) -> None:
    pil, field = source
    manager.settings.allow_pickle = True
    try:
        assert manager.add(upscaler_files["pickled"]).type == "upscaler"
        ours = _ours(invokeai_invoker, invokeai_run_graph(_graph("pickled", field)))
    finally:
        manager.settings.allow_pickle = False
    descriptor = _reference_descriptor(upscaler_files["esrgan-x2"])
    assert np.array_equal(ours, _as_uint8(descriptor(_as_tensor(pil))))


def test_bad_upscale_inputs_name_the_field(with_upscalers: Any, invokeai_run_graph: Any, source: Any) -> None:
    from invokeai_core import NodeFieldError

    _, field = source
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(_graph("tiny-sd", field))
    assert err.value.field == "model" and "'tiny-sd' is a main model, not an upscaler" in str(err.value)
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(_graph("esrgan-x2", field, tile_size=8, tile_overlap=8))
    assert err.value.field == "tile_overlap"
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(
            {"nodes": {"m": {"id": "m", "type": "main_model_loader", "model": "esrgan-x2"}}, "edges": []}
        )
    assert err.value.field == "model" and "is an upscaler, not a main model: use upscale_image" in str(err.value)

"""Model cache, events, progress previews, cancellation, metadata, masks, and bad input."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import edge, granular_txt2img

SIZE = 64


def txt2img(model: str = "tiny-sd", **fields: Any) -> dict[str, Any]:
    node = {
        "id": "t",
        "type": "txt2img",
        "model": model,
        "prompt": "p",
        "width": SIZE,
        "height": SIZE,
        "steps": 3,
        "seed": 1,
        **fields,
    }
    return {"nodes": {"t": node}, "edges": []}


def test_second_run_loads_nothing_and_load_events_come_once(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    events: list[Any] = []
    invokeai_invoker.services.events.subscribe(events.append, names=["model_load_started", "model_load_complete"])
    first = invokeai_run_graph(txt2img(seed=1))
    assert first.status == "completed", first.errors
    loads = manager.cache.loads
    assert loads == 5  # unet, vae, text_encoder, tokenizer, scheduler config
    started = [e.submodel for e in events if e.event_name == "model_load_started"]
    assert sorted(started) == ["scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    assert all(e.session_id == first.session.id and e.model_name == "tiny-sd" for e in events)
    second = invokeai_run_graph(txt2img(seed=2))
    assert second.status == "completed"
    assert manager.cache.loads == loads and len(events) == 10  # nothing reloaded, no new events
    assert manager.cache.hits >= 5


def test_lru_eviction_under_a_tiny_budget(manager: Any, invokeai_run_graph: Any) -> None:
    manager.cache.settings.ram_budget_gb = 4 / 1024  # 4 MB: less than the whole model
    run = invokeai_run_graph(txt2img())
    assert run.status == "completed", run.errors
    assert manager.cache.evictions > 0
    assert manager.cache.used_bytes <= 4 * 2**20 or len(manager.cache.cached()) == 1


def test_progress_events_carry_small_previews(manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any) -> None:
    progress: list[Any] = []
    invokeai_invoker.services.events.subscribe(progress.append, names=["invocation_progress"])
    run = invokeai_run_graph(txt2img(steps=4))
    assert run.status == "completed"
    assert [(p.step, p.total) for p in progress] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert all(p.image is not None and p.image.dataURL.startswith("data:image/jpeg;base64,") for p in progress)
    assert progress[0].image.width == SIZE // 8  # made from the latents, not a VAE decode


def test_cancel_stops_within_a_step(manager: Any, invokeai_invoker: Any) -> None:
    progress: list[Any] = []
    session = invokeai_invoker.create_session(txt2img(steps=50, width=SIZE, height=SIZE))
    first_step = threading.Event()

    def on_progress(event: Any) -> None:
        progress.append(event)
        if event.step == 2:
            invokeai_invoker.cancel(session.id)
            first_step.set()

    invokeai_invoker.services.events.subscribe(on_progress, names=["invocation_progress"], session_id=session.id)
    invokeai_invoker.invoke(session.id)
    done = invokeai_invoker.wait(session.id, timeout=120)
    assert done.status == "canceled"
    assert len(progress) <= 3  # the step in flight finishes, nothing after it
    assert "t" not in done.results_by_source()
    assert invokeai_invoker.services.image_records.list().total == 0


def test_output_images_carry_generation_metadata(manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any) -> None:
    from PIL import Image

    run = invokeai_run_graph(txt2img(seed=77, scheduler="euler_a"))
    record = invokeai_invoker.services.image_records.get(run["t"].image.image_name)
    assert record.is_intermediate is False
    assert record.metadata["seed"] == 77 and record.metadata["model"] == "tiny-sd"
    assert record.metadata["scheduler"] == "euler_a"
    path = invokeai_invoker.services.images.get_path(run["t"].image.image_name)
    with Image.open(path) as img:
        assert json.loads(img.text["invokeai_metadata"])["seed"] == 77
        graph = json.loads(img.text["invokeai_graph"])
    assert graph["nodes"]["t"]["type"] == "txt2img"


def test_granular_img2img_with_masks(manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any) -> None:
    from PIL import Image

    images = invokeai_invoker.services.image_service
    src = images.create(Image.linear_gradient("L").resize((SIZE, SIZE)).convert("RGB")).field
    black = images.create(Image.new("L", (SIZE, SIZE), 0)).field
    white = images.create(Image.new("L", (SIZE, SIZE), 255)).field

    def graph(mask: Any | None) -> dict[str, Any]:
        nodes = {
            "m": {"id": "m", "type": "main_model_loader", "model": "tiny-sd"},
            "p": {"id": "p", "type": "prompt", "prompt": "x"},
            "i": {"id": "i", "type": "image_to_latents", "image": src.model_dump()},
            "z": {"id": "z", "type": "noise", "seed": 4, "width": SIZE, "height": SIZE},
            "d": {"id": "d", "type": "denoise_latents", "steps": 4, "strength": 0.8},
        }
        edges = [
            edge("m", "clip", "p", "clip"),
            edge("m", "unet", "d", "unet"),
            edge("m", "vae", "i", "vae"),
            edge("p", "conditioning", "d", "positive_conditioning"),
            edge("z", "latents", "d", "noise"),
            edge("i", "latents", "d", "latents"),
        ]
        if mask is not None:
            nodes["k"] = {
                "id": "k",
                "type": "create_denoise_mask",
                "mask": mask.model_dump(),
                "width": SIZE,
                "height": SIZE,
            }
            edges.append(edge("k", "denoise_mask", "d", "denoise_mask"))
        return {"nodes": nodes, "edges": edges}

    objects = invokeai_invoker.services.objects
    keep_all = invokeai_run_graph(graph(black))
    assert keep_all.status == "completed", keep_all.errors
    start = objects.load(keep_all["i"].latents.latents_name)
    kept = objects.load(keep_all["d"].latents.latents_name)
    assert np.array_equal(start.numpy(), kept.numpy())  # a black mask keeps every latent
    repaint_all = invokeai_run_graph(graph(white))
    unmasked = invokeai_run_graph(graph(None))
    a = objects.load(repaint_all["d"].latents.latents_name).numpy()
    b = objects.load(unmasked["d"].latents.latents_name).numpy()
    assert np.allclose(a, b, atol=1e-5) and not np.allclose(a, start.numpy(), atol=1e-2)


def test_bad_inputs_name_the_field(manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any) -> None:
    from invokeai_core import NodeFieldError

    # a model that is not installed (or of the wrong base) is refused before anything runs (preflight)
    with pytest.raises(NodeFieldError, match="unknown model 'tiny-s' \\(did you mean 'tiny-sd'\\?") as err:
        invokeai_run_graph(txt2img(model="tiny-s"))
    assert err.value.node_id == "t" and err.value.field == "model"
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(txt2img(width=100))
    assert err.value.node_id == "t" and err.value.field == "width"
    with pytest.raises(NodeFieldError, match="'tiny-sdxl' is an SDXL model: use sdxl_model_loader"):
        invokeai_run_graph({"nodes": {"m": {"id": "m", "type": "main_model_loader", "model": "tiny-sdxl"}}})
    from PIL import Image

    images = invokeai_invoker.services.image_service
    src = images.create(Image.new("RGB", (SIZE, SIZE))).field
    small_mask = images.create(Image.new("L", (32, 32))).field
    bad_mask = invokeai_run_graph(
        {
            "nodes": {
                "i": {
                    "id": "i",
                    "type": "inpaint",
                    "model": "tiny-sd",
                    "image": src.model_dump(),
                    "mask": small_mask.model_dump(),
                    "steps": 2,
                }
            },
            "edges": [],
        }
    )
    assert bad_mask.status == "failed" and "field 'mask'" in bad_mask.errors["i"].message


def test_long_prompts_are_truncated_with_a_warning(manager: Any, invokeai_run_graph: Any, caplog: Any) -> None:
    run = invokeai_run_graph(txt2img(prompt="word " * 200))
    assert run.status == "completed"
    assert any("tokens" in r.getMessage() and "ignored" in r.getMessage() for r in caplog.records)


def test_a_corrupt_model_fails_cleanly_and_leaves_nothing_half_loaded(
    invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, tmp_path: Path
) -> None:
    import shutil

    from invokeai_diffusers.models.manager import ModelManager

    broken = tmp_path / "broken"
    shutil.copytree(model_folders["sd"], broken)
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.write_bytes(b"not weights")
    manager = invokeai_invoker.services.get(ModelManager)
    manager.add(broken, name="broken")
    run = invokeai_run_graph(txt2img(model="broken"))
    assert run.status == "failed"
    assert "field 'model'" in run.errors["t"].message and "unet" in run.errors["t"].message
    assert all(name != "broken" or sub != "unet" for name, sub, _ in manager.cache.cached())
    shutil.rmtree(broken)
    gone = invokeai_run_graph(txt2img(model="broken"))
    assert "files are gone" in gone.errors["t"].message


def test_granular_graph_runs_for_sdxl_with_a_negative_prompt(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, model_folders: Any
) -> None:
    """The negative prompt reaches SDXL's denoiser: every stage is diffusers' own for that negative
    prompt (exactly, see stages.py), and the pixels differ from the same graph without it."""
    from stages import assert_equal_stages, our_stages, reference_pipeline, reference_stages

    def run(negative: str | None) -> Any:
        graph = granular_txt2img(
            "tiny-sdxl", prompt="a", negative=negative, seed=1, size=SIZE, steps=2, scheduler="euler", sdxl=True
        )
        return our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionXLPipeline", "euler")

    with_negative, without = run("b"), run(None)
    pipe = reference_pipeline("StableDiffusionXLPipeline", model_folders["sdxl"], "euler")
    call = {
        "prompt": "a",
        "negative_prompt": "b",
        "num_inference_steps": 2,
        "guidance_scale": 7.5,
        "width": SIZE,
        "height": SIZE,
    }
    assert_equal_stages(with_negative, reference_stages(pipe, 1, **call))
    assert np.abs(with_negative["image"].astype(int) - without["image"].astype(int)).max() > 1

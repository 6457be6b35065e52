"""LoRA: installed as models, applied unfused like diffusers (`load_lora_weights` + `set_adapters`).

Tiny random LoRAs are made here with peft (`init_lora_weights=False`: lora_B is random, not zero, so
they change the output) and saved with diffusers' `save_lora_weights`. The references are
pipelines built independently with `from_pretrained`, `load_lora_weights` and `set_adapters`,
compared exactly at every stage by `stages.py` (one LoRA on SD 1.x: all 11 schedulers, the granular
graph and txt2img).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import edge, granular_txt2img
from stages import ALL_SCHEDULERS, assert_equal_stages, our_stages, reference_pipeline, reference_stages, steps_for

SIZE = 64
STEPS = 3
PROMPT, NEGATIVE = "a lighthouse", "rain"


def make_lora(folder: Path, out: Path, *, seed: int, rank: int, alpha: int) -> Path:
    """A random LoRA on the UNet's attention and the text encoder's projections.

    The text encoder's adapter is injected with peft itself: transformers 5.24's `add_adapter` demands
    peft >= 0.22 (unreleased), while loading adapters (`load_adapter`, what diffusers calls) does not."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(seed)
    unet_cfg = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False
    )
    te_cfg = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"], init_lora_weights=False
    )
    pipe.unet.add_adapter(unet_cfg)
    inject_adapter_in_model(te_cfg, pipe.text_encoder)
    StableDiffusionPipeline.save_lora_weights(
        str(out.parent),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)),
        unet_lora_adapter_metadata=unet_cfg.to_dict(),
        text_encoder_lora_adapter_metadata=te_cfg.to_dict(),
        weight_name=out.name,
        safe_serialization=True,
    )
    return out


@pytest.fixture(scope="session")
def lora_files(model_folders: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("loras")
    return {
        "ink": make_lora(model_folders["sd"], base / "ink.safetensors", seed=1, rank=4, alpha=8),
        "glow": make_lora(model_folders["sd"], base / "glow.safetensors", seed=2, rank=2, alpha=2),
    }


@pytest.fixture
def with_loras(manager: Any, lora_files: dict[str, Path]) -> Any:
    for name, path in lora_files.items():
        manager.add(path, name=name)
    return manager


def lora_graph(
    loras: list[tuple[str, float]], seed: int, scheduler: str = "default", steps: int = STEPS
) -> dict[str, Any]:
    """The granular txt2img graph with lora_loader nodes chained between the loader and its users."""
    graph = granular_txt2img(
        "tiny-sd", prompt=PROMPT, negative=NEGATIVE, seed=seed, size=SIZE, steps=steps, scheduler=scheduler
    )
    source = "m"
    for i, (name, weight) in enumerate(loras):
        node = f"lora{i}"
        graph["nodes"][node] = {"id": node, "type": "lora_loader", "lora": name, "weight": weight}
        graph["edges"] += [edge(source, "unet", node, "unet"), edge(source, "clip", node, "clip")]
        source = node
    for e in graph["edges"]:
        if e["source"]["node_id"] == "m" and e["source"]["field"] in ("unet", "clip") and source != "m":
            if not e["destination"]["node_id"].startswith("lora"):
                e["source"]["node_id"] = source
    return graph


def reference(folder: Path, files: dict[str, Path], loras: list[tuple[str, float]], scheduler: str) -> Any:
    """A diffusers pipeline with the LoRAs loaded and weighted."""
    pipe = reference_pipeline("StableDiffusionPipeline", folder, scheduler)
    for name, _ in loras:
        pipe.load_lora_weights(str(files[name]), adapter_name=name)
    if loras:
        pipe.set_adapters([n for n, _ in loras], adapter_weights=[w for _, w in loras])
    return pipe


def run_and_compare(
    invoker: Any,
    run_graph: Any,
    folder: Path,
    files: dict[str, Path],
    loras: list[tuple[str, float]],
    seed: int,
    scheduler: str = "default",
) -> Any:
    """The granular graph and txt2img with the LoRAs equal the pipeline at every stage (stages.py)."""
    steps = steps_for(scheduler, STEPS)
    pipeline = "StableDiffusionPipeline"
    granular = our_stages(invoker, run_graph, lora_graph(loras, seed, scheduler, steps), pipeline, scheduler)
    node = {
        "id": "t",
        "type": "txt2img",
        "model": "tiny-sd",
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "seed": seed,
        "width": SIZE,
        "height": SIZE,
        "steps": steps,
        "scheduler": scheduler,
        "loras": [{"name": n, "weight": w} for n, w in loras],
    }
    one_node = our_stages(invoker, run_graph, {"nodes": {"t": node}, "edges": []}, pipeline, scheduler, image_node="t")
    call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": steps, "width": SIZE, "height": SIZE}
    ref = reference_stages(reference(folder, files, loras, scheduler), seed, **call)
    assert_equal_stages(granular, ref)
    assert_equal_stages(one_node, ref)
    return granular["final"]


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_one_lora_equals_diffusers_load_lora_weights_and_set_adapters(
    scheduler: str, with_loras: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, lora_files: Any
) -> None:
    import torch

    ours = run_and_compare(
        invokeai_invoker,
        invokeai_run_graph,
        model_folders["sd"],
        lora_files,
        [("ink", 0.8)],
        seed=7,
        scheduler=scheduler,
    )
    if scheduler == "default":
        plain = run_and_compare(invokeai_invoker, invokeai_run_graph, model_folders["sd"], lora_files, [], seed=7)
        assert not torch.allclose(ours, plain, atol=1e-3)  # the LoRA changes the result


def test_two_loras_with_different_weights_equal_diffusers(
    with_loras: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, lora_files: Any
) -> None:
    import torch

    both = run_and_compare(
        invokeai_invoker, invokeai_run_graph, model_folders["sd"], lora_files, [("ink", 0.6), ("glow", -1.3)], seed=5
    )
    one = run_and_compare(invokeai_invoker, invokeai_run_graph, model_folders["sd"], lora_files, [("ink", 0.6)], seed=5)
    assert not torch.allclose(both, one, atol=1e-3)


def test_a_lora_loads_no_base_model_and_leaves_the_base_weights_exactly(
    with_loras: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    import torch

    first = invokeai_run_graph(lora_graph([], seed=1))
    assert first.status == "completed", first.errors
    unet = with_loras.load("tiny-sd", "unet")
    text_encoder = with_loras.load("tiny-sd", "text_encoder")
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    te_before = {k: v.clone() for k, v in text_encoder.state_dict().items()}
    events: list[Any] = []
    invokeai_invoker.services.events.subscribe(events.append, names=["model_load_started"])
    loads = with_loras.cache.loads
    run = invokeai_run_graph(lora_graph([("ink", 1.0), ("glow", 0.5)], seed=1))
    assert run.status == "completed", run.errors
    assert sorted((e.model_name, e.submodel) for e in events) == [("glow", "lora"), ("ink", "lora")]
    assert with_loras.cache.loads == loads + 2
    for module, saved in ((unet, before), (text_encoder, te_before)):
        after = module.state_dict()
        assert list(after) == list(saved)  # no peft layers left behind
        assert all(torch.equal(after[k], saved[k]) for k in saved)
    again = invokeai_run_graph(lora_graph([("ink", 1.0)], seed=1))
    assert again.status == "completed" and with_loras.cache.loads == loads + 2  # the LoRA is cached too


def test_lora_models_are_added_probed_listed_and_removed(manager: Any, lora_files: Any, tmp_path: Path) -> None:
    import torch
    from invokeai_diffusers.models.manager import ModelInstallError

    record = manager.add(lora_files["ink"], name="ink")
    assert (record.type, record.base, record.format) == ("lora", "sd-1", "lora")
    assert record.hash.startswith("blake2b:") and record.size == lora_files["ink"].stat().st_size
    assert [(r.name, r.type) for r in manager.list()] == [("ink", "lora"), ("tiny-sd", "main"), ("tiny-sdxl", "main")]
    state_dict, _, _ = manager.load("ink", "lora")
    assert state_dict and all(k.startswith(("unet.", "text_encoder.")) and "lora" in k for k in state_dict)
    assert any(k.startswith("text_encoder.") for k in state_dict)
    manager.remove("ink")
    assert [r.name for r in manager.list()] == ["tiny-sd", "tiny-sdxl"]
    pickle = tmp_path / "x.ckpt"
    torch.save({"unet.a.lora_A.weight": torch.zeros(2, 2)}, pickle)
    with pytest.raises(ModelInstallError, match="pickle"):
        manager.add(pickle)


def test_bad_lora_inputs_name_the_field(with_loras: Any, invokeai_run_graph: Any) -> None:
    from invokeai_core import NodeFieldError

    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph(lora_graph([("tiny-sdxl", 1.0)], seed=1))
    assert err.value.field == "lora" and "not a LoRA" in str(err.value)
    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph({"nodes": {"m": {"id": "m", "type": "main_model_loader", "model": "ink"}}, "edges": []})
    assert err.value.field == "model" and "is a LoRA" in str(err.value)
    run = invokeai_run_graph(lora_graph([("ink", 1.0), ("ink", 0.5)], seed=1))
    assert run.status == "failed" and "already applied" in str(run.errors)
    sdxl = granular_txt2img(
        "tiny-sdxl", prompt="x", negative=None, seed=1, size=SIZE, steps=1, scheduler="default", sdxl=True
    )
    sdxl["nodes"]["t"] = {
        "id": "t",
        "type": "txt2img",
        "model": "tiny-sdxl",
        "width": SIZE,
        "height": SIZE,
        "steps": 1,
        "loras": [{"name": "ink", "weight": 1.0}],
    }
    run = invokeai_run_graph({"nodes": {"t": sdxl["nodes"]["t"]}, "edges": []})
    assert run.status == "failed" and "is for sd-1, the model is sdxl" in str(run.errors)


def test_the_cli_adds_lists_and_removes_a_lora(lora_files: Any, tmp_path: Path) -> None:
    import json

    from test_models_cli import cli

    added = cli("models", "add", str(lora_files["glow"]), "--name", "glow", root=tmp_path)
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith("installed glow (sd-1, lora, lora) from ")
    listed = json.loads(cli("models", "list", "--json", root=tmp_path).stdout)
    assert [(m["name"], m["type"], m["base"]) for m in listed] == [("glow", "lora", "sd-1")]
    refused = cli(
        "models", "add", str(lora_files["glow"]), "--name", "g2", "--prediction-type", "epsilon", root=tmp_path
    )
    assert refused.returncode == 2 and "a LoRA takes no --config or --prediction-type" in refused.stderr
    assert cli("models", "remove", "glow", root=tmp_path).returncode == 0
    assert json.loads(cli("models", "list", "--json", root=tmp_path).stdout) == []


def test_sdxl_lora_on_unet_and_both_text_encoders_equals_diffusers(
    manager: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, tmp_path: Path
) -> None:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    folder = model_folders["sdxl"]
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)
    torch.manual_seed(4)
    unet_cfg = LoraConfig(r=2, lora_alpha=4, target_modules=["to_k", "to_v"], init_lora_weights=False)
    te_cfg = LoraConfig(r=2, lora_alpha=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    pipe.unet.add_adapter(unet_cfg)
    inject_adapter_in_model(te_cfg, pipe.text_encoder)
    inject_adapter_in_model(te_cfg, pipe.text_encoder_2)
    path = tmp_path / "xl.safetensors"
    StableDiffusionXLPipeline.save_lora_weights(
        str(tmp_path),
        unet_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet)),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder)),
        text_encoder_2_lora_layers=convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.text_encoder_2)),
        unet_lora_adapter_metadata=unet_cfg.to_dict(),
        text_encoder_lora_adapter_metadata=te_cfg.to_dict(),
        text_encoder_2_lora_adapter_metadata=te_cfg.to_dict(),
        weight_name=path.name,
    )
    assert manager.add(path).base == "sdxl"
    graph = granular_txt2img(
        "tiny-sdxl", prompt=PROMPT, negative=NEGATIVE, seed=8, size=SIZE, steps=STEPS, scheduler="default", sdxl=True
    )
    graph["nodes"]["x"] = {"id": "x", "type": "lora_loader", "lora": "xl", "weight": 0.7}
    graph["edges"] += [edge("m", "unet", "x", "unet"), edge("m", "clip", "x", "clip"), edge("m", "clip2", "x", "clip2")]
    for e in graph["edges"]:
        if e["source"]["node_id"] == "m" and e["source"]["field"] in ("unet", "clip", "clip2"):
            if e["destination"]["node_id"] != "x":
                e["source"]["node_id"] = "x"
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionXLPipeline", "default")
    ref = reference_pipeline("StableDiffusionXLPipeline", folder, "default")
    ref.load_lora_weights(str(path), adapter_name="xl")
    ref.set_adapters(["xl"], adapter_weights=[0.7])
    call = {
        "prompt": PROMPT,
        "negative_prompt": NEGATIVE,
        "guidance_scale": 7.5,
        "num_inference_steps": STEPS,
        "width": SIZE,
        "height": SIZE,
    }
    assert_equal_stages(ours, reference_stages(ref, 8, **call))

"""Textual inversion: embeddings installed as models, applied by `<name>` in a prompt, exactly as
diffusers' `load_textual_inversion` applies them.

Random embeddings are made here for the tiny models (a 2-vector one in diffusers' `{token: tensor}`
layout, A1111's `emb_params` safetensors and `string_to_param` pickle, SDXL's `clip_l`/`clip_g`).
The references are pipelines built independently with `from_pretrained` and given the embedding
with `load_textual_inversion` (SDXL: once per text encoder, as diffusers documents). Compared with
`torch.equal` at every stage by `stages.py` (and the prompt embeddings against the reference's
`encode_prompt` under `no_grad`), for all 11 schedulers on SD 1.x.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import granular_txt2img
from stages import ALL_SCHEDULERS, assert_equal_stages, our_stages, reference_pipeline, reference_stages, steps_for

SIZE = 64
STEPS = 3
PROMPT, NEGATIVE = "a <style> lighthouse", "rain"


@pytest.fixture(scope="session")
def embedding_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    base = tmp_path_factory.mktemp("embeddings")
    gen = torch.Generator().manual_seed(11)
    files = {
        "style": base / "style.safetensors",  # diffusers layout, two vectors
        "glow": base / "glow.safetensors",  # A1111 safetensors, one vector
        "old": base / "old.pt",  # A1111 pickle
        "xl": base / "xl.safetensors",  # SDXL
        "wide": base / "wide.safetensors",  # an SD 2.x-wide vector (1024)
    }
    save_file({"<whatever>": torch.randn(2, 32, generator=gen)}, str(files["style"]))
    save_file({"emb_params": torch.randn(1, 32, generator=gen)}, str(files["glow"]))
    torch.save(
        {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": torch.randn(1, 32, generator=gen)},
            "name": "old",
            "step": 100,
        },
        str(files["old"]),
    )
    save_file(
        {"clip_l": torch.randn(1, 32, generator=gen), "clip_g": torch.randn(1, 32, generator=gen)}, str(files["xl"])
    )
    save_file({"emb_params": torch.randn(1, 1024, generator=gen)}, str(files["wide"]))
    return files


@pytest.fixture
def with_embeddings(manager: Any, embedding_files: dict[str, Path]) -> Any:
    for name in ("style", "glow", "xl"):
        manager.add(embedding_files[name], name=name)
    return manager


@pytest.mark.parametrize("scheduler", ALL_SCHEDULERS)
def test_sd_embedding_equals_diffusers_load_textual_inversion(
    scheduler: str,
    with_embeddings: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    embedding_files: Any,
) -> None:
    import torch

    steps = steps_for(scheduler, STEPS)
    graph = granular_txt2img(
        "tiny-sd", prompt=PROMPT, negative=NEGATIVE, seed=9, size=SIZE, steps=steps, scheduler=scheduler
    )
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionPipeline", scheduler)
    pipe = reference_pipeline("StableDiffusionPipeline", model_folders["sd"], scheduler)
    plain = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
    pipe.load_textual_inversion(str(embedding_files["style"]), token="<style>")
    assert pipe.maybe_convert_prompt(PROMPT, pipe.tokenizer) == "a <style> <style>_1 lighthouse"  # two vectors
    with torch.no_grad():
        embeds = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
        negative = pipe.encode_prompt(NEGATIVE, "cpu", 1, False)[0]
    assert torch.equal(ours["embeds"], embeds) and torch.equal(ours["negative"], negative)  # the nodes' too
    assert not torch.allclose(embeds, plain, atol=1e-3)  # the embedding changes the conditioning
    call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": steps, "width": SIZE, "height": SIZE}
    assert_equal_stages(ours, reference_stages(pipe, 9, **call))


def test_sdxl_embedding_on_both_text_encoders_equals_diffusers(
    with_embeddings: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, embedding_files: Any
) -> None:
    import torch
    from safetensors.torch import load_file

    prompt = "a <xl> tower"
    graph = granular_txt2img(
        "tiny-sdxl", prompt=prompt, negative=NEGATIVE, seed=4, size=SIZE, steps=STEPS, scheduler="euler_a", sdxl=True
    )
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionXLPipeline", "euler_a")
    pipe = reference_pipeline("StableDiffusionXLPipeline", model_folders["sdxl"], "euler_a")
    state_dict = load_file(str(embedding_files["xl"]))
    pipe.load_textual_inversion(
        state_dict["clip_l"], token="<xl>", text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer
    )
    pipe.load_textual_inversion(
        state_dict["clip_g"], token="<xl>", text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2
    )
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompt, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
        )
    assert torch.equal(ours["embeds"], embeds) and torch.equal(ours["pooled"], pooled)  # the prompt node's too
    call = {
        "prompt": prompt,
        "negative_prompt": NEGATIVE,
        "guidance_scale": 7.5,
        "num_inference_steps": STEPS,
        "width": SIZE,
        "height": SIZE,
    }
    assert_equal_stages(ours, reference_stages(pipe, 4, **call))


def test_txt2img_node_applies_embeddings_from_both_prompts(
    with_embeddings: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, embedding_files: Any
) -> None:
    call = {"prompt": "a <glow> boat <style>", "negative_prompt": "<glow> fog", "width": SIZE, "height": SIZE}
    node = {"id": "t", "type": "txt2img", "model": "tiny-sd", "seed": 3, "steps": STEPS, "scheduler": "euler", **call}
    graph = {"nodes": {"t": node}, "edges": []}
    ours = our_stages(invokeai_invoker, invokeai_run_graph, graph, "StableDiffusionPipeline", "euler", image_node="t")
    pipe = reference_pipeline("StableDiffusionPipeline", model_folders["sd"], "euler")
    pipe.load_textual_inversion(
        [str(embedding_files["glow"]), str(embedding_files["style"])], token=["<glow>", "<style>"]
    )
    assert_equal_stages(ours, reference_stages(pipe, 3, num_inference_steps=STEPS, **call))


def test_the_text_encoder_and_tokenizer_are_restored_and_no_base_model_reloads(
    with_embeddings: Any, invokeai_invoker: Any, invokeai_run_graph: Any
) -> None:
    import torch

    def graph(prompt: str) -> dict[str, Any]:
        return granular_txt2img(
            "tiny-sd", prompt=prompt, negative=None, seed=1, size=SIZE, steps=1, scheduler="default"
        )

    first = invokeai_run_graph(graph("a lighthouse"))
    assert first.status == "completed", first.errors
    text_encoder = with_embeddings.load("tiny-sd", "text_encoder")
    tokenizer = with_embeddings.load("tiny-sd", "tokenizer")
    embedding = text_encoder.get_input_embeddings()
    weights, length, vocab = embedding.weight.detach().clone(), len(tokenizer), text_encoder.config.vocab_size
    pointer = embedding.weight.data_ptr()
    events: list[Any] = []
    invokeai_invoker.services.events.subscribe(events.append, names=["model_load_started"])
    loads = with_embeddings.cache.loads
    run = invokeai_run_graph(graph("<style> and <glow> and <not-installed>"))
    assert run.status == "completed", run.errors
    assert sorted((e.model_name, e.submodel) for e in events) == [("glow", "embedding"), ("style", "embedding")]
    assert with_embeddings.cache.loads == loads + 2
    assert text_encoder.get_input_embeddings() is embedding
    assert torch.equal(text_encoder.get_input_embeddings().weight, weights) and embedding.weight.data_ptr() == pointer
    assert len(tokenizer) == length and text_encoder.config.vocab_size == vocab
    assert "<style>" not in tokenizer.get_vocab()
    again = invokeai_run_graph(graph("<style>"))
    assert again.status == "completed" and with_embeddings.cache.loads == loads + 2  # cached too
    assert len(events) == 2


def test_embeddings_are_probed_in_every_layout(manager: Any, embedding_files: Any) -> None:
    from invokeai_diffusers.models.manager import ModelInstallError

    for name, base in (("style", "sd-1"), ("glow", "sd-1"), ("xl", "sdxl"), ("wide", "sd-2")):
        record = manager.add(embedding_files[name])
        assert (record.name, record.type, record.base, record.format) == (name, "embedding", base, "embedding")
    with pytest.raises(ModelInstallError, match="pickle"):
        manager.add(embedding_files["old"])
    assert sorted(manager.load("xl", "embedding")[0]) == ["text_encoder", "text_encoder_2"]
    manager.remove("style")
    assert "style" not in [r.name for r in manager.list()]


def test_a_pickled_a1111_embedding_loads_when_pickles_are_allowed(
    manager: Any, invokeai_run_graph: Any, invokeai_invoker: Any, embedding_files: Any, model_folders: Any
) -> None:
    import torch

    manager.settings.allow_pickle = True
    try:
        record = manager.add(embedding_files["old"])
        assert (record.type, record.base) == ("embedding", "sd-1")
        run = invokeai_run_graph(
            granular_txt2img("tiny-sd", prompt="<old> cat", negative=None, seed=1, size=SIZE, steps=1, scheduler="ddim")
        )
        assert run.status == "completed", run.errors
    finally:
        manager.settings.allow_pickle = False
    pipe = reference_pipeline("StableDiffusionPipeline", model_folders["sd"], "default")
    pipe.load_textual_inversion(str(embedding_files["old"]), token="<old>")
    with torch.no_grad():
        embeds = pipe.encode_prompt("<old> cat", "cpu", 1, False)[0]
    conditioning = invokeai_invoker.services.objects.load(run["p"].conditioning.conditioning_name)
    assert torch.equal(conditioning["embeds"], embeds)


def test_an_embedding_of_another_base_names_the_prompt_field(
    with_embeddings: Any, invokeai_run_graph: Any, embedding_files: Any
) -> None:
    with_embeddings.add(embedding_files["wide"])
    cases = [
        ("tiny-sd", "<xl>", False, "embedding 'xl' is for sdxl, the model is sd-1"),
        ("tiny-sdxl", "<style>", True, "embedding 'style' is for sd-1, the model is sdxl"),
        ("tiny-sd", "<wide>", False, "embedding 'wide' is 1024 wide, the text_encoder takes 32"),
    ]
    for model, prompt, sdxl, message in cases:
        graph = granular_txt2img(
            model, prompt=prompt, negative=None, seed=1, size=SIZE, steps=1, scheduler="default", sdxl=sdxl
        )
        run = invokeai_run_graph(graph)
        assert run.status == "failed" and message in str(run.errors) and "'prompt'" in str(run.errors)
    from invokeai_core import NodeFieldError

    with pytest.raises(NodeFieldError) as err:
        invokeai_run_graph({"nodes": {"m": {"id": "m", "type": "main_model_loader", "model": "glow"}}, "edges": []})
    assert err.value.field == "model" and "is a textual inversion embedding, not a main model" in str(err.value)

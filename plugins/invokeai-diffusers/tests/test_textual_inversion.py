"""Textual inversion: embeddings installed as models, applied by `<name>` in a prompt, exactly as
diffusers' `load_textual_inversion` applies them.

Random embeddings are made here for the tiny models (a 2-vector one in diffusers' `{token: tensor}`
layout, A1111's `emb_params` safetensors and `string_to_param` pickle, SDXL's `clip_l`/`clip_g`).
The references are pipelines built independently with `from_pretrained` and given the embedding
with `load_textual_inversion` (SDXL: once per text encoder, as diffusers documents). Compared with
`torch.equal`: the prompt embeddings (`encode_prompt` under `no_grad`), the initial noise, the
latents after every scheduler step, the final latents, the VAE's decoded tensor and the 8-bit image,
for three schedulers.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import granular_txt2img, pixels

SIZE = 64
STEPS = 3
PROMPT, NEGATIVE = "a <style> lighthouse", "rain"
SCHEDULER_CLASSES = {
    "default": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
}


class Recorder:
    """Records what a class's method returns while active. The wrapper keeps the method's signature
    (`functools.wraps`): pipelines pass `generator` to `scheduler.step` only when its signature
    names it, so a bare `*args` wrapper would silently change what ancestral schedulers draw."""

    def __init__(self, cls: Any, name: str, pick: Any = None) -> None:
        self.cls, self.name, self.pick = cls, name, pick or (lambda out: out)
        self.values: list[Any] = []

    def __enter__(self) -> Recorder:
        import functools

        self.original = original = getattr(self.cls, self.name)

        @functools.wraps(original)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            self.values.append(self.pick(out).clone())
            return out

        setattr(self.cls, self.name, wrapper)
        return self

    def __exit__(self, *exc: Any) -> None:
        setattr(self.cls, self.name, self.original)


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


def _reference_pipe(cls_name: str, folder: Path, scheduler: str) -> Any:
    import diffusers

    cls = getattr(diffusers, cls_name)
    extra: dict[str, Any] = {} if "XL" in cls_name else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_pretrained(str(folder), local_files_only=True, **extra)
    if scheduler != "default":
        from invokeai_diffusers.schedulers import SCHEDULERS

        class_name, extra_config = SCHEDULERS[scheduler]
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra_config)
    pipe.scheduler = copy.deepcopy(pipe.scheduler)
    assert type(pipe.scheduler).__name__ == SCHEDULER_CLASSES[scheduler]
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _stages(pipe: Any, seed: int, **call: Any) -> dict[str, Any]:
    """Initial noise, per-step, final latents, decoded tensor and 8-bit image of a reference call."""
    import diffusers
    import torch

    with (
        Recorder(type(pipe), "prepare_latents") as initial,
        Recorder(type(pipe.scheduler), "step", lambda out: out[0]) as steps,
    ):
        final = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="latent", **call).images
    with Recorder(diffusers.AutoencoderKL, "decode", lambda out: out[0]) as decoded:
        image = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="pt", **call).images
    return {
        "initial": initial.values[0],
        "steps": steps.values,
        "final": final,
        "decoded": decoded.values[0],
        "image": (image.permute(0, 2, 3, 1).float().numpy()[0] * 255).round().astype("uint8"),
    }


def _ours(
    invokeai_run_graph: Any, graph: dict[str, Any], scheduler: str, pipeline: str = "StableDiffusionPipeline"
) -> tuple[Any, dict[str, Any]]:
    import diffusers

    with (
        Recorder(getattr(diffusers, pipeline), "prepare_latents") as initial,
        Recorder(getattr(diffusers, SCHEDULER_CLASSES[scheduler]), "step", lambda out: out[0]) as steps,
        Recorder(diffusers.AutoencoderKL, "decode", lambda out: out[0]) as decoded,
    ):
        run = invokeai_run_graph(graph)
    assert run.status == "completed", run.errors
    return run, {"initial": initial.values, "steps": steps.values, "decoded": decoded.values}


def _assert_equal_stages(invoker: Any, run: Any, ours: dict[str, Any], ref: dict[str, Any]) -> None:
    import torch

    objects = invoker.services.objects
    assert len(ours["initial"]) == 1 and torch.equal(ours["initial"][0], ref["initial"])
    assert len(ours["steps"]) == len(ref["steps"]) == STEPS
    for i, (a, b) in enumerate(zip(ours["steps"], ref["steps"], strict=True)):
        assert torch.equal(a, b), f"step {i}: max difference {(a - b).abs().max()}"
    assert torch.equal(objects.load(run["d"].latents.latents_name), ref["final"])
    assert len(ours["decoded"]) == 1 and torch.equal(ours["decoded"][0], ref["decoded"])
    assert np.array_equal(pixels(invoker, run["l"].image).astype("uint8"), ref["image"])


@pytest.mark.parametrize("scheduler", list(SCHEDULER_CLASSES))
def test_sd_embedding_equals_diffusers_load_textual_inversion(
    scheduler: str,
    with_embeddings: Any,
    invokeai_invoker: Any,
    invokeai_run_graph: Any,
    model_folders: Any,
    embedding_files: Any,
) -> None:
    import torch

    graph = granular_txt2img(
        "tiny-sd", prompt=PROMPT, negative=NEGATIVE, seed=9, size=SIZE, steps=STEPS, scheduler=scheduler
    )
    run, ours = _ours(invokeai_run_graph, graph, scheduler)
    pipe = _reference_pipe("StableDiffusionPipeline", model_folders["sd"], scheduler)
    plain = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
    pipe.load_textual_inversion(str(embedding_files["style"]), token="<style>")
    assert pipe.maybe_convert_prompt(PROMPT, pipe.tokenizer) == "a <style> <style>_1 lighthouse"  # two vectors
    with torch.no_grad():
        embeds = pipe.encode_prompt(PROMPT, "cpu", 1, False)[0]
        negative = pipe.encode_prompt(NEGATIVE, "cpu", 1, False)[0]
    objects = invokeai_invoker.services.objects
    assert torch.equal(objects.load(run["p"].conditioning.conditioning_name)["embeds"], embeds)
    assert torch.equal(objects.load(run["n"].conditioning.conditioning_name)["embeds"], negative)
    assert not torch.allclose(embeds, plain, atol=1e-3)  # the embedding changes the conditioning
    call = {"prompt": PROMPT, "negative_prompt": NEGATIVE, "num_inference_steps": STEPS, "width": SIZE, "height": SIZE}
    _assert_equal_stages(invokeai_invoker, run, ours, _stages(pipe, 9, **call))


def test_sdxl_embedding_on_both_text_encoders_equals_diffusers(
    with_embeddings: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, embedding_files: Any
) -> None:
    import torch
    from safetensors.torch import load_file

    prompt = "a <xl> tower"
    graph = granular_txt2img(
        "tiny-sdxl", prompt=prompt, negative=NEGATIVE, seed=4, size=SIZE, steps=STEPS, scheduler="euler_a", sdxl=True
    )
    run, ours = _ours(invokeai_run_graph, graph, "euler_a", "StableDiffusionXLPipeline")
    pipe = _reference_pipe("StableDiffusionXLPipeline", model_folders["sdxl"], "euler_a")
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
    conditioning = invokeai_invoker.services.objects.load(run["p"].conditioning.conditioning_name)
    assert torch.equal(conditioning["embeds"], embeds) and torch.equal(conditioning["pooled"], pooled)
    call = {
        "prompt": prompt,
        "negative_prompt": NEGATIVE,
        "guidance_scale": 7.5,
        "num_inference_steps": STEPS,
        "width": SIZE,
        "height": SIZE,
    }
    _assert_equal_stages(invokeai_invoker, run, ours, _stages(pipe, 4, **call))


def test_txt2img_node_applies_embeddings_from_both_prompts(
    with_embeddings: Any, invokeai_invoker: Any, invokeai_run_graph: Any, model_folders: Any, embedding_files: Any
) -> None:
    import torch

    call = {"prompt": "a <glow> boat <style>", "negative_prompt": "<glow> fog", "width": SIZE, "height": SIZE}
    node = {"id": "t", "type": "txt2img", "model": "tiny-sd", "seed": 3, "steps": STEPS, "scheduler": "euler", **call}
    run = invokeai_run_graph({"nodes": {"t": node}, "edges": []})
    assert run.status == "completed", run.errors
    pipe = _reference_pipe("StableDiffusionPipeline", model_folders["sd"], "default")
    pipe.scheduler = copy.deepcopy(pipe.scheduler)
    pipe.load_textual_inversion(
        [str(embedding_files["glow"]), str(embedding_files["style"])], token=["<glow>", "<style>"]
    )
    image = pipe(generator=torch.Generator("cpu").manual_seed(3), num_inference_steps=STEPS, output_type="np", **call)
    expected = (image.images[0] * 255).round().astype("uint8")
    assert np.array_equal(pixels(invokeai_invoker, run["t"].image).astype("uint8"), expected)


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
    pipe = _reference_pipe("StableDiffusionPipeline", model_folders["sd"], "default")
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

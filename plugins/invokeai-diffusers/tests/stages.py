"""Stage-by-stage comparison of our runs with diffusers' pipelines, shared by the bit-for-bit tests.

The reference side is a diffusers pipeline built independently (`from_pretrained`), its scheduler
chosen by the diffusers class names written out below, never through this project's scheduler
table. Both sides are recorded the same way, by wrapping diffusers' own methods while they run:

* the scheduler: the instance whose `step` ran (its class and full config);
* the prompt embeddings (and negative, pooled, negative pooled): what the pipeline's
  `encode_prompt` returned in the call (the pipeline calls it under `no_grad`; in a granular graph
  the denoiser's pipeline gets our embeddings and returns them, and the `prompt` nodes' stored
  conditioning must equal them);
* the initial latents: what `prepare_latents` returned;
* the latents after every step: what `scheduler.step` returned, every call (Heun's and the
  second-order samplers' inner calls included);
* the final latents: the `output_type="latent"` result (ours: the `denoise_latents` output; a
  one-node form keeps no latents, so there only the decoder's input below stands for them);
* the decoder's input (the final latents divided by the VAE's scaling factor) and its output, the
  decoded tensor before any 8-bit conversion (`AutoencoderKL.decode`);
* the 8-bit image (the reference's `output_type="pt"` quantised as `numpy_to_pil` does).

Everything is compared with `torch.equal` / `np.array_equal`: no tolerance.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import numpy as np

#: Our scheduler names -> the diffusers class and `from_config` kwargs a diffusers user picks for
#: that sampler, written out here so the tests check `invokeai_diffusers.schedulers` against them.
#: None: the model's own scheduler (the pipeline's, deep-copied so each run starts fresh).
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]] | None] = {
    "default": None,
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
ALL_SCHEDULERS = list(SCHEDULER_CLASSES)
#: the tiny test models' own scheduler (`invokeai_diffusers.models.demo._scheduler`)
MODEL_DEFAULT = "EulerDiscreteScheduler"


def steps_for(scheduler: str, steps: int) -> int:
    """`steps`, or 4 for pndm: PNDMScheduler made from a non-PNDM config runs its Runge-Kutta warm-up
    (`skip_prk_steps` False), and its `set_timesteps` fails in diffusers itself below 4 inference
    steps (it tiles `pndm_order` = 4 PRK timesteps onto the last ones: "operands could not be
    broadcast together"), in the reference pipeline exactly as in ours."""
    return max(steps, 4) if scheduler == "pndm" else steps


def scheduler_class_name(name: str, default: str = MODEL_DEFAULT) -> str:
    spec = SCHEDULER_CLASSES[name]
    return default if spec is None else spec[0]


def set_reference_scheduler(pipe: Any, name: str) -> None:
    """The diffusers way: `pipe.scheduler = Cls.from_config(pipe.scheduler.config, **kwargs)`."""
    import diffusers

    spec = SCHEDULER_CLASSES[name]
    if spec is None:
        pipe.scheduler = copy.deepcopy(pipe.scheduler)
    else:
        class_name, kwargs = spec
        pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **kwargs)


def reference_pipeline(cls_name: str, folder: Path, scheduler: str, **components: Any) -> Any:
    """`cls_name.from_pretrained(folder, **components)` with the scheduler for `scheduler`."""
    import diffusers

    cls = getattr(diffusers, cls_name)
    extra: dict[str, Any] = {} if "XL" in cls_name else {"safety_checker": None, "requires_safety_checker": False}
    pipe = cls.from_pretrained(str(folder), local_files_only=True, **components, **extra)
    set_reference_scheduler(pipe, scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _clone(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return type(value)(_clone(v) for v in value)
    return value.clone() if hasattr(value, "clone") else value


class Recorder:
    """Records what a class's method returns (and optionally its first argument and instance) while
    active. The wrapper keeps the method's signature (`functools.wraps`): pipelines pass `generator`
    to `scheduler.step` only when its signature names it, so a bare `*args` wrapper would silently
    change what ancestral schedulers draw."""

    def __init__(self, cls: Any, name: str, pick: Any = None, *, inputs: bool = False) -> None:
        self.cls, self.name, self.pick, self.keep_inputs = cls, name, pick or (lambda out: out), inputs
        self.values: list[Any] = []
        self.inputs: list[Any] = []
        self.instances: list[Any] = []

    def __enter__(self) -> Recorder:
        self.own = self.name in self.cls.__dict__
        self.original = self.cls.__dict__.get(self.name)
        method = getattr(self.cls, self.name)

        @functools.wraps(method)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = method(*args, **kwargs)
            self.values.append(_clone(self.pick(out)))
            if self.keep_inputs:
                self.inputs.append(_clone(args[1]))
            self.instances.append(args[0])
            return out

        setattr(self.cls, self.name, wrapper)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.own:
            setattr(self.cls, self.name, self.original)
        else:  # inherited: drop the wrapper
            delattr(self.cls, self.name)


def _first(out: Any) -> Any:
    return out[0] if isinstance(out, tuple) else out


def _item0(out: Any) -> Any:  # a tuple (return_dict=False) or a BaseOutput
    return out[0]


def _embeddings(encoded: Any) -> dict[str, Any]:
    """encode_prompt's result: (embeds, negative) for SD, (+ pooled, negative pooled) for SDXL."""
    keys = ("embeds", "negative", "pooled", "negative_pooled")
    return dict(zip(keys, encoded, strict=False))


def _scheduler_of(recorder: Recorder) -> tuple[str, dict[str, Any]] | None:
    if not recorder.instances:
        return None
    instance = recorder.instances[0]
    assert all(i is instance for i in recorder.instances), "one scheduler per run"
    return type(instance).__name__, dict(instance.config)


def to_uint8(image: Any) -> Any:
    """A `(1, 3, H, W)` tensor in [0, 1] as 8-bit HWC, the quantisation `numpy_to_pil` applies."""
    return (image.permute(0, 2, 3, 1).float().cpu().numpy()[0] * 255).round().astype("uint8")


def reference_stages(
    pipe: Any, seed: int, *, callback: Any = None, reset: Any = None, decode_self: bool = False, **call: Any
) -> dict[str, Any]:
    """Every stage of a reference call (two calls: `output_type="latent"`, then `"pt"`).

    `callback` is passed as `callback_on_step_end`; `reset()` runs before each call (state a
    callback changes); `decode_self`: the pipeline decodes by its deprecated `decode_latents`
    (StableDiffusionAdapterPipeline: `1 / scaling_factor * latents`, a float or two off dividing, and
    a numpy result), so the reference decode is the other pipelines' own on its final latents."""
    import diffusers
    import torch

    extra = {"callback_on_step_end": callback} if callback is not None else {}
    scheduler_cls = type(pipe.scheduler)
    if reset is not None:
        reset()
    with (
        Recorder(type(pipe), "encode_prompt") as encoded,
        Recorder(type(pipe), "prepare_latents", _first) as initial,
        Recorder(scheduler_cls, "step", _item0) as steps,
    ):
        final = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="latent", **call, **extra).images
    if reset is not None:
        reset()
    out: dict[str, Any] = {
        **_embeddings(encoded.values[-1]),
        "scheduler": _scheduler_of(steps),
        "initial": initial.values,
        "steps": steps.values,
        "final": final,
    }
    if decode_self:
        from diffusers.image_processor import VaeImageProcessor

        with torch.no_grad():
            z = final / pipe.vae.config.scaling_factor
            tensor = pipe.vae.decode(z, return_dict=False)[0]
        out.update(decode_input=[z], decoded=[tensor])
        out["image"] = to_uint8(VaeImageProcessor(vae_scale_factor=8).postprocess(tensor, output_type="pt"))
        return out
    with Recorder(diffusers.AutoencoderKL, "decode", _item0, inputs=True) as decoded:
        image = pipe(generator=torch.Generator("cpu").manual_seed(seed), output_type="pt", **call, **extra).images
    out.update(decode_input=decoded.inputs, decoded=decoded.values, image=to_uint8(image))
    return out


def our_stages(
    invoker: Any,
    run_graph: Any,
    graph: dict[str, Any],
    pipeline: str,
    scheduler: str,
    *,
    image_node: str = "l",
    model_default: str = MODEL_DEFAULT,
) -> dict[str, Any]:
    """Every stage of our run of `graph`, whose denoising runs `pipeline` with the scheduler class of
    `scheduler` (`model_default`: the model's own class, for "default"); a granular graph (a `d`
    denoise_latents node) also gives its final latents, and its `p`/`n` prompt nodes' conditioning
    must be what the denoiser's pipeline got."""
    import diffusers
    import torch
    from conftest import pixels

    cls = getattr(diffusers, pipeline)
    with (
        Recorder(cls, "encode_prompt") as encoded,
        Recorder(cls, "prepare_latents", _first) as initial,
        Recorder(getattr(diffusers, scheduler_class_name(scheduler, model_default)), "step", _item0) as steps,
        Recorder(diffusers.AutoencoderKL, "decode", _item0, inputs=True) as decoded,
    ):
        run = run_graph(graph)
    assert run.status == "completed", run.errors
    assert encoded.values, f"{pipeline} did not run"
    out: dict[str, Any] = {
        **_embeddings(encoded.values[-1]),
        "scheduler": _scheduler_of(steps),
        "initial": initial.values,
        "steps": steps.values,
        "decode_input": decoded.inputs,
        "decoded": decoded.values,
        "image": pixels(invoker, run[image_node].image).astype("uint8"),
        "run": run,
    }
    objects = invoker.services.objects
    if "d" in graph["nodes"]:
        out["final"] = objects.load(run["d"].latents.latents_name)
    for node, embeds, pooled in (("p", "embeds", "pooled"), ("n", "negative", "negative_pooled")):
        if node in graph["nodes"]:
            stored = objects.load(run[node].conditioning.conditioning_name)
            assert torch.equal(stored["embeds"], out[embeds]), f"{node}: stored conditioning"
            if out.get(pooled) is not None:
                assert torch.equal(stored["pooled"], out[pooled]), f"{node}: stored pooled conditioning"
    return out


def assert_equal_stages(ours: dict[str, Any], ref: dict[str, Any], steps: int | None = None) -> None:
    """Every stage of `ours` equals the reference's exactly (`steps`: the expected step count)."""
    import torch

    assert ours["scheduler"] is not None, "our scheduler never stepped"
    assert ours["scheduler"] == ref["scheduler"], (ours["scheduler"], ref["scheduler"])
    for key in ("embeds", "negative", "pooled", "negative_pooled"):
        if ref.get(key) is not None:
            assert torch.equal(ours[key], ref[key]), key
    assert len(ours["initial"]) == len(ref["initial"]) == 1 and torch.equal(ours["initial"][0], ref["initial"][0])
    assert len(ours["steps"]) == len(ref["steps"]) > 0
    if steps is not None:
        assert len(ref["steps"]) == steps
    for i, (a, b) in enumerate(zip(ours["steps"], ref["steps"], strict=True)):
        assert torch.equal(a, b), f"step {i}: max difference {(a - b).abs().max()}"
    if "final" in ours:
        assert torch.equal(ours["final"], ref["final"]), (
            f"final: max difference {(ours['final'] - ref['final']).abs().max()}"
        )
    for key in ("decode_input", "decoded"):
        assert len(ours[key]) == len(ref[key]) == 1 and torch.equal(ours[key][0], ref[key][0]), key
    assert ours["image"].shape == ref["image"].shape and np.array_equal(ours["image"], ref["image"])
    assert ref["image"].std() > 1  # not a blank image on both sides

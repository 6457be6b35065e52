"""Scheduler names and how to build each from a model's scheduler config."""

from __future__ import annotations

from typing import Any, Literal

SchedulerName = Literal[
    "default", "ddim", "ddpm", "euler", "euler_a", "heun", "lms", "pndm", "dpmpp_2m", "dpmpp_2m_karras", "unipc"
]

#: name -> (diffusers class, extra config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
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


def install_scheduler(pipe: Any, name: str) -> None:
    """Swap a pipeline's scheduler the way diffusers documents it:
    `pipe.scheduler = Cls.from_config(pipe.scheduler.config)`. The pipeline was built with the
    model's own scheduler, so config fixes its constructor applies (steps_offset, clip_sample)
    carry over exactly as they do for a diffusers user."""
    if name != "default":
        pipe.scheduler = make_scheduler(name, dict(pipe.scheduler.config))


def make_scheduler(name: str, model_config: dict[str, Any]) -> Any:
    """A fresh scheduler (schedulers hold per-run state) from the model's own config."""
    import diffusers

    if name == "default":
        class_name = str(model_config.get("_class_name", "PNDMScheduler"))
        extra: dict[str, Any] = {}
    else:
        class_name, extra = SCHEDULERS[name]
    cls = getattr(diffusers, class_name)
    return cls.from_config(model_config, **extra)

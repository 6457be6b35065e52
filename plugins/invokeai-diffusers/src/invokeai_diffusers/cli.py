"""`invokeai models ...`: list, add, remove, show, create-demo. Light to import (click only)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from invokeai_diffusers.models.manager import ModelManager
    from invokeai_diffusers.models.records import PredictionType


class _BadInput(click.ClickException):
    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"invokeai: error: {self.format_message()}", err=True)


def _manager(ctx: click.Context) -> ModelManager:
    from invokeai_core import CliState, InvokeAIError
    from invokeai_diffusers.models.manager import ModelManager

    state = ctx.find_object(CliState)
    try:
        config = state.config if state is not None else None
        return ModelManager(config)
    except InvokeAIError as e:
        raise _BadInput(str(e)) from None


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


@click.group("models")
def models_group() -> None:
    """Install, list and remove models (invokeai-diffusers)."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """List installed models."""
    records = _manager(ctx).list()
    if as_json:
        click.echo(json.dumps([r.model_dump(mode="json") for r in records], indent=2))
        return
    if not records:
        click.echo("no models installed: `invokeai models create-demo` or `invokeai models add PATH`")
        return
    width = max(len(r.name) for r in records)
    for r in records:
        click.echo(
            f"{r.name.ljust(width)}  {r.base:5}  {r.variant if r.type == 'main' else r.type:7}  {r.format:10}  "
            f"{_human_size(r.size):>9}  {r.path}"
        )


@models_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show_model(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show one model's record."""
    from invokeai_core import InvokeAIError

    try:
        record = _manager(ctx).get(name)
    except InvokeAIError as e:
        raise _BadInput(str(e)) from None
    data = record.model_dump(mode="json")
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    width = max(map(len, data))
    for key, value in data.items():
        click.echo(f"{key:{width}}  {'-' if value is None else value}")


@models_group.command("add")
@click.argument("path", type=click.Path(exists=False))
@click.option("--name", default=None, help="The name to install it under (default: the folder or file name).")
@click.option("--description", default="", help="A description.")
@click.option(
    "--config",
    "config_dir",
    default=None,
    metavar="DIR",
    help="Checkpoints of a non-standard size: a diffusers folder of the same architecture (configs are enough).",
)
@click.option(
    "--prediction-type",
    type=click.Choice(["epsilon", "v_prediction"]),
    default=None,
    help="Override the scheduler's prediction type (SD 2.x checkpoints default to v_prediction, as 2.1 768 does).",
)
@click.pass_context
def add_model(
    ctx: click.Context,
    path: str,
    name: str | None,
    description: str,
    config_dir: str | None,
    prediction_type: PredictionType | None,
) -> None:
    """Install a model from a local diffusers folder or a single-file .safetensors checkpoint, or a LoRA
    (.safetensors, diffusers or kohya layout; use it with the lora_loader node or txt2img's `loras`),
    a textual inversion embedding (write <NAME> in a prompt), an upscaler spandrel recognises (the
    upscale_image node) or an IP-Adapter .safetensors with its image_encoder/ folder beside it (the
    ip_adapter node).

    Recorded in place, never copied. Checkpoints of SD 1.x, 2.x and XL load offline with the configs
    this plugin ships; pickles (.ckpt, .pt) need plugins.diffusers.allow_pickle = true.
    """
    from invokeai_core import InvokeAIError

    try:
        record = _manager(ctx).add(
            path,
            name=name,
            description=description,
            config=config_dir,
            prediction_type=prediction_type,
        )
    except InvokeAIError as e:
        raise _BadInput(str(e)) from None
    kind = record.variant if record.type == "main" else record.type
    click.echo(f"installed {record.name} ({record.base}, {kind}, {record.format}) from {record.path}")


@models_group.command("remove")
@click.argument("name")
@click.option("--delete-files", is_flag=True, help="Also delete the model's files.")
@click.pass_context
def remove_model(ctx: click.Context, name: str, delete_files: bool) -> None:
    """Uninstall a model."""
    from invokeai_core import InvokeAIError

    try:
        record = _manager(ctx).remove(name, delete_files=delete_files)
    except InvokeAIError as e:
        raise _BadInput(str(e)) from None
    click.echo(f"removed {record.name}" + (" and its files" if delete_files else ""))


@models_group.command("create-demo")
@click.option("--sdxl", is_flag=True, help="An SDXL-style model (two text encoders).")
@click.option("--name", default=None, help="The name (default demo-sd or demo-sdxl).")
@click.pass_context
def create_demo(ctx: click.Context, sdxl: bool, name: str | None) -> None:
    """Build a small random-weight model offline and install it (its images are noise)."""
    from invokeai_diffusers.models.demo import DEMO_NOTE

    manager = _manager(ctx)
    installed = {r.name for r in manager.list()}
    record = manager.create_demo(sdxl=sdxl, name=name)
    if record.name in installed:
        click.echo(f"{record.name} ({record.base}) is already installed at {record.path}: nothing to do")
        return
    click.echo(f"installed {record.name} ({record.base}) at {record.path}")
    click.echo(DEMO_NOTE)

"""`invokeai s3 check`: try the configured bucket. Light to import (click only; boto3 loads when the
command runs)."""

from __future__ import annotations

import json

import click


class _BadInput(click.ClickException):
    exit_code = 2

    def show(self, file: object = None) -> None:
        click.echo(f"invokeai: error: {self.format_message()}", err=True)


@click.group("s3")
def s3_group() -> None:
    """Image storage on S3 or an S3-compatible store (invokeai-s3)."""


@s3_group.command("check")
@click.option(
    "--write/--read-only",
    default=True,
    help="Also store, read back and delete a small probe object (default), or only reach and list.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def check(ctx: click.Context, write: bool, as_json: bool) -> None:
    """Check the [plugins.s3] settings against the store: exit status 0 if every step works, 1 if
    the store fails one (the line says why), 2 for bad settings."""
    from invokeai_core import CliState, ConfigError

    state = ctx.find_object(CliState)
    try:
        config = state.config if state is not None else None
        from invokeai_s3.storage import S3ImageFileStorage, S3StorageError

        store = S3ImageFileStorage(config)
    except ConfigError as e:
        raise _BadInput(str(e)) from None
    except ImportError as e:
        raise _BadInput(f"invokeai-s3 cannot load boto3 ({e}): pip install invokeai-s3") from None
    selected = config.services.images if config is not None else None
    note = (
        None
        if selected == "s3"
        else f"note: services.images is '{selected}'; set it to 's3' to store images in this bucket"
    )
    try:
        steps = store.check(write=write)
        failure = None
    except S3StorageError as e:
        steps, failure = [], str(e)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({"ok": failure is None, "steps": steps, "error": failure, "selected": selected == "s3"}))
    else:
        for step in steps:
            click.echo(step)
        if note:
            click.echo(note)
    if failure is not None:
        if not as_json:
            click.echo(f"invokeai: error: {failure}", err=True)
        ctx.exit(1)

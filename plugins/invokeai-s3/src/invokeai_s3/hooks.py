"""Entry point of the plugin (group `invokeai.plugins`, name `s3`).

Registering costs a string: `invokeai_s3.storage` (and with it boto3) is imported by the kernel only
when the configuration selects `services.images = "s3"`, or when `invokeai s3 check` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import ServiceRegistrar, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def register_services(register: ServiceRegistrar) -> None:
    register(
        "images",
        "s3",
        "invokeai_s3.storage:S3ImageFileStorage",
        description="PNG files and WebP thumbnails as objects of an S3 bucket (AWS or any S3-compatible "
        "store); settings in [plugins.s3]",
        install_hint="pip install invokeai-s3 (it brings boto3)",
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    from invokeai_s3.cli import s3_group

    cli.add_command(s3_group)

"""Entry point of the plugin (group `invokeai.plugins`, name `temporal`).

Registering costs a few strings: the queue module (and with it temporalio) is imported by the
kernel only when the configuration selects `services.queue = "temporal"`; `invokeai worker`'s
module imports temporalio only when the command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import ServiceRegistrar, hookimpl

if TYPE_CHECKING:
    import click

_HINT = "pip install invokeai-temporal (it brings temporalio and invokeai-postgres)"


@hookimpl
def register_services(register: ServiceRegistrar) -> None:
    register(
        "queue",
        "temporal",
        "invokeai_temporal.queue:TemporalSessionQueue",
        description="The session queue on PostgreSQL, dispatched through Temporal to `invokeai worker` processes "
        "(one workflow per item); settings in [plugins.temporal] and [plugins.postgres]",
        install_hint=_HINT,
    )


@hookimpl
def register_commands(cli: click.Group) -> None:
    from invokeai_temporal.cli import worker_command

    cli.add_command(worker_command)

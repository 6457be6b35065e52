"""`invokeai`: the kernel's CLI. Plugins add commands through `register_commands(cli)`.

Only click and the plugin hook modules are imported to build it, so `invokeai --help` stays fast
with every plugin installed; each command imports what it needs when it runs.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from invokeai_core.cli.state import CliError, CliState, GlobalOptions, check_argv, parse_override, preparse
from invokeai_core.version import __version__


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="invokeai")
@click.option("--root", type=click.Path(file_okay=False), help="Root folder (default: $INVOKEAI_ROOT or ~/invokeai).")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Configuration file (default: <root>/invokeai.toml).",
)
@click.option(
    "-o",
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a configuration key, e.g. -o services.images=s3 (repeatable).",
)
@click.pass_context
def cli(ctx: click.Context, root: str | None, config_file: str | None, options: tuple[str, ...]) -> None:
    """invokeai-core: a node-graph engine for image generation.

    Node types and commands come from plugins; see `invokeai plugins` and `invokeai nodes`.
    """
    overrides = dict(parse_override(o) for o in options)
    state = ctx.obj if isinstance(ctx.obj, CliState) else None
    if state is None:
        ctx.obj = CliState(GlobalOptions(root, config_file, overrides))
    else:
        state.options = GlobalOptions(root, config_file, overrides)


def _register_builtin_commands(group: click.Group) -> None:
    from invokeai_core.cli import commands

    for command in commands.COMMANDS:
        group.add_command(command)


def build_cli(state: CliState) -> click.Group:
    """The CLI with the kernel's commands and every plugin's."""
    _register_builtin_commands(cli)
    try:
        state.host.add_commands(cli)
    except CliError:
        raise
    return cli


def _debug(state: CliState) -> bool:
    """Whether the log level is `debug` (then a plugin failure shows its traceback too)."""
    try:
        return state.config.log_level.lower() == "debug"
    except Exception:
        return False


def main(argv: list[str] | None = None) -> Any:
    from invokeai_core.errors import PluginError

    args = list(sys.argv[1:] if argv is None else argv)
    state = CliState(preparse(args))
    try:
        check_argv(args)
        group = build_cli(state)
        return group.main(args=args, prog_name="invokeai", obj=state)
    except CliError as e:
        e.show()
        sys.exit(e.exit_code)
    except PluginError as e:  # INVOKEAI_STRICT_PLUGINS=1 and a broken plugin, found at any point
        if _debug(state):
            import traceback

            traceback.print_exc()
        CliError(f"{e} (the traceback: -o log_level=debug)").show()
        sys.exit(CliError.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()

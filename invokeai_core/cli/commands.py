"""The kernel's own commands: plugins, nodes, run, config."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from invokeai_core.cli import plugin_install
from invokeai_core.cli.output import echo_json, table
from invokeai_core.cli.plugin_new import new_command
from invokeai_core.cli.state import CliError, CliState, pass_state, read_input

if TYPE_CHECKING:
    from invokeai_core.invoker import Invoker
    from invokeai_core.session import Session


# -- plugins --------------------------------------------------------------------------------------
@click.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List plugins: name, version, hooks, status (and why one failed); `new NAME` creates one;
    `install SPEC...`, `uninstall NAME` and `check` change and check the installed node packs."""
    if ctx.invoked_subcommand is not None:
        return
    state = ctx.find_object(CliState)
    assert state is not None
    infos = state.host.plugin_list()
    if as_json:
        echo_json([i.to_dict() for i in infos])
        return
    rows = []
    for i in infos:
        rows.append(
            [
                i.name,
                i.dist or "-",
                i.version or "-",
                i.status + (" (built-in)" if i.builtin else ""),
                ", ".join(i.hooks) or "-",
                str(len(i.nodes)),
            ]
        )
    click.echo(table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "NODES"]))
    for i in infos:
        if i.status in ("failed", "blocked", "disabled") and (i.error or i.hint):
            click.echo(f"\n{i.name}: {i.status}" + (f": {i.error}" if i.error else ""))
            if i.hint:
                click.echo(f"  hint: {i.hint}")


plugins_command.add_command(new_command)
for _command in plugin_install.COMMANDS:
    plugins_command.add_command(_command)


# -- nodes ----------------------------------------------------------------------------------------
@click.command("nodes")
@click.argument("type_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON schemas.")
@pass_state
def nodes_command(state: CliState, type_id: str | None, as_json: bool) -> None:
    """List node types, or show one node's inputs and outputs (the help of its `run` command)."""
    from invokeai_core.errors import InvokeAIError

    registry = state.host.registry
    if type_id is not None:
        try:
            registry.get(type_id)
        except InvokeAIError as e:
            raise CliError(str(e)) from None
        if as_json:
            echo_json(registry.node_schema(type_id))
        else:
            from invokeai_core.cli.node_commands import node_help

            click.echo(node_help(registry, type_id))
        return
    entries = registry.entries()
    if as_json:
        echo_json({e.cls.invocation_type: registry.node_schema(e.cls.invocation_type) for e in entries})
        return
    rows = [
        [
            e.cls.invocation_type,
            e.cls.invocation_meta.title,
            e.cls.invocation_meta.category,
            e.plugin,
            e.cls.invocation_meta.version,
        ]
        for e in entries
    ]
    click.echo(table(rows, ["TYPE", "TITLE", "CATEGORY", "PLUGIN", "VERSION"]))


# -- run ------------------------------------------------------------------------------------------
def print_session(session: Session, invoker: Invoker, out: Any = None) -> None:
    """Human-readable results: one line per node output, image paths included, then the status."""
    from invokeai_core.cli.runner import print_results

    print_results(session, list(session.graph.nodes), invoker, out)
    click.echo(f"session {session.id}: {session.status}", file=out)


RUN_HELP = """Run a pipeline of node commands, a graph file, or an interactive shell.

\b
  invokeai run "blank_image --width 64 --height 64 | img_blur --radius 2 | save_image"
  invokeai run add --a 2 --b 3 '|' mul --link -1 value a --b 4   (separate words)
  invokeai run -f graph.json        (or -f - to read the graph from stdin)
  invokeai run --workflow portrait --set steps=30   (a saved workflow, `invokeai workflows`)
  invokeai run                      (the shell: invoke> lines in one session)

Each command is a node type (`invokeai nodes`), its options are the node's inputs (`invokeai nodes
TYPE` or `invokeai run "TYPE --help"`). `|` auto-links: an input not given takes the previous
node's output of the same name and a compatible type. `--link SOURCE FIELD DEST_FIELD` feeds input
DEST_FIELD from output FIELD of node SOURCE (a node id, or -1 for the previous node, -2 ...).
Node ids are 1, 2, 3, ... unless `--id NAME` names one. Image inputs take an image name or a file.

Exit status: 0 completed, 1 the session failed or was canceled, 2 bad input (nothing ran).
"""


@click.command(
    "run",
    help=RUN_HELP,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("-f", "--file", "graph_file", type=str, metavar="FILE|-", help="A graph JSON file ('-' reads stdin).")
@click.option(
    "--from-image",
    "from_image",
    type=str,
    metavar="FILE.png",
    help="Re-run the graph stored in an image this engine produced.",
)
@click.option(
    "--workflow", "workflow", default=None, metavar="ID|NAME", help="Run a saved workflow (`invokeai workflows`)."
)
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="With --workflow: set an exposed input.")
@click.option(
    "--version", "workflow_version", type=click.IntRange(1), default=None, help="With --workflow: this version."
)
@click.option("--json", "as_json", is_flag=True, default=None, help="Print the session result as one JSON object.")
@click.option(
    "--out", type=click.Path(file_okay=False), default=None, help="Also export the images produced as PNG files here."
)
@click.option("--timeout", type=float, default=None, help="Give up (and cancel) after this many seconds.")
@click.option("--progress/--no-progress", default=None, help="Show progress bars (default: when stderr is a terminal).")
@click.argument("pipeline", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run_command(
    ctx: click.Context,
    graph_file: str | None,
    from_image: str | None,
    workflow: str | None,
    sets: tuple[str, ...],
    workflow_version: int | None,
    as_json: bool | None,
    out: str | None,
    timeout: float | None,
    progress: bool | None,
    pipeline: tuple[str, ...],
) -> None:
    from invokeai_core.cli.runner import RunOptions

    state = ctx.find_object(CliState)
    assert state is not None
    options = RunOptions(as_json=bool(as_json), out=out, timeout=timeout, progress=progress)
    if sum(x is not None and x != () for x in (graph_file, from_image, workflow, pipeline or None)) > 1:
        raise CliError("give one of a pipeline, -f FILE, --from-image FILE.png or --workflow ID")
    if (sets or workflow_version is not None) and workflow is None:
        raise CliError("--set and --version go with --workflow ID")
    if workflow is not None:
        from invokeai_core.cli.workflow_commands import workflow_graph_json

        text = workflow_graph_json(state, workflow, workflow_version, sets)
        sys.exit(_run_graph_text(state, f"workflow {workflow}", text, options))
    if from_image is not None:
        sys.exit(_run_graph_text(state, from_image, _graph_from_image(from_image), options))
    if graph_file is not None:
        sys.exit(_run_graph_file(state, graph_file, options))
    if pipeline:
        sys.exit(_run_pipeline(state, list(pipeline), options))
    sys.exit(_run_shell(state, options))


def _graph_from_image(path: str) -> str:
    """The graph JSON embedded in a PNG that this engine saved as a final image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            text = getattr(img, "text", {}).get("invokeai_graph")
    except FileNotFoundError:
        raise CliError(f"cannot read {path}: no such file") from None
    except (OSError, UnidentifiedImageError) as e:
        raise CliError(f"{path}: not a readable image ({e})") from None
    if not text:
        raise CliError(f"{path}: the image carries no graph (only final images saved by invokeai do)")
    return str(text)


def _run_graph_file(state: CliState, graph_file: str, options: Any) -> int:
    text = read_input(graph_file)
    return _run_graph_text(state, graph_file, text, options)


def _run_graph_text(state: CliState, graph_file: str, text: str, options: Any) -> int:
    from invokeai_core.cli.runner import CliSession, export_images
    from invokeai_core.errors import InvokeAIError
    from invokeai_core.graph import Graph

    try:
        graph = Graph.from_json(text, state.host.registry, require_inputs=True)
    except InvokeAIError as e:
        raise CliError(f"{graph_file}: {e}") from None
    invoker = state.invoker()
    with invoker:
        runner = CliSession(invoker, options)
        try:
            runner.use(invoker.create_session(graph))
        except InvokeAIError as e:
            raise CliError(f"{graph_file}: {e}") from None
        session = runner.run()
        nodes = list(session.graph.nodes)
        if options.as_json:
            click.echo(json.dumps(session.result_json()))
        else:
            print_session(session, invoker)
        if options.out:
            for path in export_images(session, nodes, invoker, options.out):
                click.echo(f"exported {path}", err=options.as_json)
    return 0 if session.status == "completed" else 1


def _run_pipeline(state: CliState, words: list[str], options: Any) -> int:
    from invokeai_core.cli.pipeline import parse_argv
    from invokeai_core.cli.runner import RUN_TAIL, CliSession, merge_run_options

    pipeline, tail = parse_argv(words)
    if tail:
        tctx = RUN_TAIL.make_context("invokeai run", tail)
        merge_run_options(options, tctx.params, tctx)
    if not pipeline.segments:
        raise CliError("the pipeline is empty")
    if pipeline.continues:
        raise CliError("the pipeline starts with '|': there is no node before it")
    invoker = state.invoker()
    with invoker:
        runner = CliSession(invoker, options)
        return runner.execute(pipeline, hoist=True, with_status=True)


def _run_shell(state: CliState, options: Any) -> int:
    from invokeai_core.cli.runner import CliSession
    from invokeai_core.cli.shell import Shell, history_path

    interactive = sys.stdin.isatty()
    invoker = state.invoker()
    with invoker:
        runner = CliSession(invoker, options, info_prefix="")
        shell = Shell(runner, history_path=history_path(state.config.root), interactive=interactive)
        return shell.loop()


# -- config ---------------------------------------------------------------------------------------
@click.group("config")
def config_group() -> None:
    """Show the effective configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def config_show(state: CliState, as_json: bool) -> None:
    """Print the effective configuration and where each value came from (secrets masked)."""
    config = state.config
    data = config.public_dict()
    if as_json:
        echo_json({"config": data, "sources": config.sources})
        return
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            flat[prefix] = value

    walk("", data)
    rows = [[k, json.dumps(v, default=str), config.sources.get(k, "default")] for k, v in flat.items()]
    click.echo(table(rows, ["KEY", "VALUE", "FROM"]))


# -- schema ---------------------------------------------------------------------------------------
@click.group("schema")
def schema_group() -> None:
    """Print JSON Schemas of the files invokeai reads."""


@schema_group.command("graph")
@click.option(
    "--no-nodes",
    is_flag=True,
    help="Only the file format: any node type, no checks of node fields (independent of the installed plugins).",
)
@pass_state
def schema_graph(state: CliState, no_nodes: bool) -> None:
    """The JSON Schema (draft 2020-12) of graph files (`invokeai run -f`, the web UI's saved
    workflows): `invokeai schema graph > graph.schema.json`. Nodes are checked against the node types
    installed here unless --no-nodes."""
    from invokeai_core.graph import Graph

    echo_json(Graph.file_schema(None if no_nodes else state.host.registry))


COMMANDS: list[click.Command] = [plugins_command, nodes_command, run_command, config_group, schema_group]

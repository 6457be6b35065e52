"""The kernel's own commands: plugins, nodes, run, config."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from invokeai_core.cli.state import CliError, CliState

if TYPE_CHECKING:
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.session import Session

pass_state = click.make_pass_decorator(CliState)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


# -- plugins --------------------------------------------------------------------------------------
@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_state
def plugins_command(state: CliState, as_json: bool) -> None:
    """List plugins: name, version, hooks, status (and why one failed)."""
    infos = state.host.plugin_list()
    if as_json:
        _echo_json([i.to_dict() for i in infos])
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
    click.echo(_table(rows, ["NAME", "DISTRIBUTION", "VERSION", "STATUS", "HOOKS", "NODES"]))
    for i in infos:
        if i.status in ("failed", "blocked", "disabled") and (i.error or i.hint):
            click.echo(f"\n{i.name}: {i.status}" + (f": {i.error}" if i.error else ""))
            if i.hint:
                click.echo(f"  hint: {i.hint}")


# -- nodes ----------------------------------------------------------------------------------------
def _type_label(annotation: Any) -> str:
    from invokeai_core.typecompat import type_name

    return type_name(annotation)


def _node_detail(registry: NodeRegistry, type_id: str) -> str:
    from invokeai_core.invocations.fields import field_extra

    entry = registry.entry(type_id)
    cls = entry.cls
    meta = cls.invocation_meta
    lines = [f"{type_id}: {meta.title}"]
    lines.append(
        f"  category {meta.category}, version {meta.version}, plugin {entry.plugin}"
        + (f", tags {', '.join(meta.tags)}" if meta.tags else "")
    )
    if meta.description:
        lines.append(f"  {meta.description}")
    lines.append("")
    lines.append("Inputs:")
    rows = []
    for name, info in cls.input_fields().items():
        extra = field_extra(info)
        if extra.get("ui_hidden"):
            continue
        if extra.get("orig_required"):
            default = "required"
        elif info.default_factory is not None:
            default = f"default {info.default_factory()!r}"
        else:
            default = f"default {info.default!r}"
        how = extra.get("input", "any")
        rows.append(
            [
                f"  {name}",
                _type_label(info.annotation),
                default,
                "" if how == "any" else f"[{how} only]",
                info.description or "",
            ]
        )
    lines.append(_table(rows, ["  name", "type", "default", "", "description"]) if rows else "  (none)")
    out = cls.output_class
    lines.append("")
    lines.append(f"Outputs ({out.output_type}):")
    orows = [[f"  {n}", _type_label(i.annotation), i.description or ""] for n, i in out.model_fields.items()]
    lines.append(_table(orows, ["  name", "type", "description"]) if orows else "  (none)")
    return "\n".join(lines)


@click.command("nodes")
@click.argument("type_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON schemas.")
@pass_state
def nodes_command(state: CliState, type_id: str | None, as_json: bool) -> None:
    """List node types, or show one node's inputs and outputs."""
    from invokeai_core.errors import InvokeAIError

    registry = state.host.registry
    if type_id is not None:
        try:
            registry.get(type_id)
        except InvokeAIError as e:
            raise CliError(str(e)) from None
        if as_json:
            _echo_json(registry.node_schema(type_id))
        else:
            click.echo(_node_detail(registry, type_id))
        return
    entries = registry.entries()
    if as_json:
        _echo_json({e.cls.invocation_type: registry.node_schema(e.cls.invocation_type) for e in entries})
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
    click.echo(_table(rows, ["TYPE", "TITLE", "CATEGORY", "PLUGIN", "VERSION"]))


# -- run ------------------------------------------------------------------------------------------
def _format_value(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"image_name"}:
        return f"image {value['image_name']}"
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def print_session(session: Session, state: CliState, out: Any = None) -> None:
    """Human-readable results: one line per node output, image paths included."""
    from invokeai_core.invocations.fields import ImageField

    images = None
    for node_id, value in session.results_by_source().items():
        node = session.graph.nodes[node_id]
        outputs = value if isinstance(value, list) else [value]
        for i, output in enumerate(outputs):
            label = node_id if not isinstance(value, list) else f"{node_id}[{i}]"
            parts = []
            for name in type(output).model_fields:
                v = getattr(output, name)
                if isinstance(v, ImageField):
                    if images is None:
                        images = state.invoker().services.images
                    path = images.get_path(v.image_name)
                    parts.append(f"{name}=image {v.image_name}" + (f" ({path})" if path else ""))
                else:
                    parts.append(
                        f"{name}={_format_value(v if not hasattr(v, 'model_dump') else v.model_dump(mode='json'))}"
                    )
            click.echo(f"{label} ({node.invocation_type}): {', '.join(parts)}", file=out)
        if isinstance(value, list) and not value:
            click.echo(f"{node_id} ({node.invocation_type}): ran 0 times", file=out)
    for node_id, err in session.errors_by_source().items():
        click.echo(f"{node_id}: error: {err.type}: {err.message}", err=True)
    click.echo(f"session {session.id}: {session.status}", file=out)


@click.command("run")
@click.option("-f", "--file", "graph_file", type=str, metavar="FILE|-", help="A graph JSON file ('-' reads stdin).")
@click.option("--json", "as_json", is_flag=True, help="Print the session result as one JSON object.")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@pass_state
def run_command(state: CliState, graph_file: str | None, as_json: bool, timeout: float | None) -> None:
    """Run a graph and print its results.

    Exit status: 0 completed, 1 the session failed or was canceled, 2 bad input (nothing ran).
    """
    from invokeai_core.errors import InvokeAIError
    from invokeai_core.graph import Graph

    if graph_file is None:
        raise CliError("give a graph with -f FILE (or -f - to read it from stdin)")
    try:
        text = sys.stdin.read() if graph_file == "-" else open(graph_file, encoding="utf-8").read()
    except OSError as e:
        raise CliError(f"cannot read {graph_file}: {e.strerror}") from None
    try:
        graph = Graph.from_json(text, state.host.registry, require_inputs=True)
    except InvokeAIError as e:
        raise CliError(f"{graph_file}: {e}") from None
    invoker = state.invoker()
    with invoker:
        try:
            session = invoker.run_graph(graph, timeout=timeout)
        except TimeoutError as e:
            raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(session.result_json()))
    else:
        print_session(session, state)
    sys.exit(0 if session.status == "completed" else 1)


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
        _echo_json({"config": data, "sources": config.sources})
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
    click.echo(_table(rows, ["KEY", "VALUE", "FROM"]))


COMMANDS: list[click.Command] = [plugins_command, nodes_command, run_command, config_group]

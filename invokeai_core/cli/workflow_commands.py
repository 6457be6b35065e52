"""`invokeai workflows ...`: the workflow library (save, list, get, versions, delete, enqueue).

Added by the built-in plugin through `register_commands`; they work on the configured library (the
SQLite database `<root>/invokeai.db` by default), so they share it with a server on the same root
folder. `invokeai run --workflow REF --set name=value` runs one in this process. Bad input is one
line on stderr and exit status 2, and changes nothing.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import click

from invokeai_core.cli.output import echo_json, one_line, table
from invokeai_core.cli.queue_commands import _bad_input, json_option, queue_option
from invokeai_core.cli.state import CliError, CliState, pass_state, read_input

if TYPE_CHECKING:
    from invokeai_core.workflows import Workflow

SET_HELP = "Set an exposed input: NAME=VALUE (repeatable; VALUE as text, or JSON when the field needs it)."


def parse_sets(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--set name=value` pairs as a dict; a pair without `=` or given twice is bad input."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise CliError(f"--set {pair!r}: use NAME=VALUE")
        if name in values:
            raise CliError(f"--set: the input '{name}' is given twice")
        values[name] = value
    return values


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._").lower()[:128]
    return slug or "workflow"


def _describe(workflow: Workflow) -> None:
    click.echo(f"workflow {workflow.id} (version {workflow.version}): {workflow.name}")
    if workflow.description:
        click.echo(f"  {one_line(workflow.description, 200)}")
    click.echo(f"saved {workflow.created_at}, {len(workflow.graph.get('nodes', {}))} node(s)")
    if not workflow.inputs:
        click.echo("inputs: none")
    for i in workflow.inputs:
        about = f" - {one_line(i.description, 80)}" if i.description else ""
        click.echo(f"input {i.name}: {i.node_id}.{i.field}{about}")


@click.group("workflows")
def workflows_group() -> None:
    """The workflow library: save, list, get, versions, delete, enqueue.

    \b
    A workflow file:
      {"name": "Portrait", "description": "...",
       "graph":  a graph, as `invokeai run -f` takes,
       "inputs": [{"name": "steps", "node_id": "denoise", "field": "steps", "description": "..."}, ...]}
    Each save of the same id is a new version. Run one with `invokeai run --workflow ID --set steps=30`.
    """


@workflows_group.command("save")
@click.argument("file", metavar="FILE|-")
@click.option("--id", "workflow_id", default=None, help="The workflow id (default: the file's 'id', or its name).")
@json_option
@pass_state
def workflows_save(state: CliState, file: str, workflow_id: str | None, as_json: bool) -> None:
    """Save a workflow file as the next version of its id (checked first: each exposed input must
    name a real node and input field)."""
    text = read_input(file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{file}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"{file}: a workflow file is a JSON object with 'name', 'graph' and 'inputs'")
    file_id = data.pop("id", None)
    data.pop("version", None)
    data.pop("created_at", None)
    wid = workflow_id or (file_id if isinstance(file_id, str) else None) or _slug(str(data.get("name", "")))
    with _bad_input():
        saved = state.invoker().services.workflows.save(wid, data)
    if as_json:
        echo_json(saved.model_dump())
        return
    click.echo(f"saved workflow {saved.id} version {saved.version} ({len(saved.inputs)} input(s))")


@workflows_group.command("list")
@click.option("--query", default=None, help="Only workflows whose id or name contains this text.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_state
def workflows_list(state: CliState, query: str | None, offset: int, limit: int, as_json: bool) -> None:
    """Workflows (their latest versions), most recently saved first."""
    with _bad_input():
        page = state.invoker().services.workflows.list(offset=offset, limit=limit, query=query)
    if as_json:
        echo_json(page.model_dump())
        return
    rows = [
        [w.id, str(w.version), one_line(w.name, 40), ", ".join(i.name for i in w.inputs), w.updated_at[:19]]
        for w in page.items
    ]
    click.echo(table(rows, ["ID", "VERSION", "NAME", "INPUTS", "SAVED"]))
    click.echo(f"({len(page.items)} of {page.total})")


@workflows_group.command("get")
@click.argument("ref", metavar="ID|NAME")
@click.option("--version", type=click.IntRange(1), default=None, help="This version (default: the latest).")
@json_option
@pass_state
def workflows_get(state: CliState, ref: str, version: int | None, as_json: bool) -> None:
    """One workflow: its inputs (and, with --json, the whole file, which `workflows save` takes back)."""
    library = state.invoker().services.workflows
    with _bad_input():
        workflow = library.resolve(ref)
        if version is not None:
            workflow = library.get(workflow.id, version)
    if as_json:
        echo_json(workflow.model_dump())
        return
    _describe(workflow)


@workflows_group.command("versions")
@click.argument("ref", metavar="ID|NAME")
@json_option
@pass_state
def workflows_versions(state: CliState, ref: str, as_json: bool) -> None:
    """Every stored version of a workflow, oldest first."""
    library = state.invoker().services.workflows
    with _bad_input():
        versions = library.versions(library.resolve(ref).id)
    if as_json:
        echo_json([v.model_dump() for v in versions])
        return
    click.echo(
        table(
            [[str(v.version), one_line(v.name, 50), v.created_at[:19]] for v in versions], ["VERSION", "NAME", "SAVED"]
        )
    )


@workflows_group.command("delete")
@click.argument("workflow_id", metavar="ID")
@pass_state
def workflows_delete(state: CliState, workflow_id: str) -> None:
    """Delete a workflow and every version of it."""
    with _bad_input():
        n = state.invoker().services.workflows.delete(workflow_id)
    click.echo(f"deleted workflow {workflow_id} ({n} version(s))")


@workflows_group.command("enqueue")
@click.argument("ref", metavar="ID|NAME")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help=SET_HELP)
@click.option("--version", type=click.IntRange(1), default=None, help="This version (default: the latest).")
@click.option("--runs", type=click.IntRange(1), default=1, show_default=True, help="Queue items to enqueue.")
@queue_option
@json_option
@pass_state
def workflows_enqueue(
    state: CliState,
    ref: str,
    sets: tuple[str, ...],
    version: int | None,
    runs: int,
    queue_id: str,
    as_json: bool,
) -> None:
    """Enqueue a workflow with these input values, `--runs` times (a queue processor runs them)."""
    from invokeai_core.workflows import workflow_batch

    values: dict[str, Any] = parse_sets(sets)
    invoker = state.invoker()
    with _bad_input():
        workflow = invoker.services.workflows.resolve(ref)
        if version is not None:
            workflow = invoker.services.workflows.get(workflow.id, version)
        batch = workflow_batch(workflow, values, invoker.registry, runs=runs, text=True)
        result = invoker.enqueue_batch(queue_id, batch)
    if as_json:
        echo_json(result.model_dump())
        return
    click.echo(
        f"enqueued {result.enqueued} item(s) of workflow {workflow.id} v{workflow.version} in queue '{queue_id}'"
    )


def workflow_graph_json(state: CliState, ref: str, version: int | None, sets: tuple[str, ...]) -> str:
    """The graph of `invokeai run --workflow REF --set ...`: the saved graph with the values set."""
    from invokeai_core.workflows import workflow_graph

    values: dict[str, Any] = parse_sets(sets)
    invoker = state.invoker()
    with _bad_input():
        workflow = invoker.services.workflows.resolve(ref)
        if version is not None:
            workflow = invoker.services.workflows.get(workflow.id, version)
        graph = workflow_graph(workflow, values, invoker.registry, text=True)
    return graph.to_json()

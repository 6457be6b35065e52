"""`invokeai queue ...` and `invokeai sessions ...`: the session queue and stored sessions.

Added by the built-in plugin through `register_commands`. They work on the configured stores (the
SQLite database `<root>/invokeai.db` by default), so they see and change the queue of a server
running on the same root folder: a canceled in-progress item is stopped by that server's processor
within its poll interval, and pause/resume are stored in the database.

Bad input (an unknown queue, item, batch or session, a malformed batch file, a full queue, a
corrupt or locked database) is one line on stderr and exit status 2, and changes nothing.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from invokeai_core.cli.output import echo_json, one_line, table
from invokeai_core.cli.state import CliError, CliState, pass_state, read_input

if TYPE_CHECKING:
    from invokeai_core.services.base import QueueItem, SessionQueueBase


STATUSES = ("pending", "in_progress", "completed", "failed", "canceled")


@contextmanager
def _bad_input() -> Iterator[None]:
    """Turn the kernel's errors (bad ids, batches, a broken database) into one-line CLI errors."""
    from invokeai_core.errors import InvokeAIError

    try:
        yield
    except InvokeAIError as e:
        raise CliError(one_line(str(e), 400)) from None
    except KeyError as e:  # a store's lookup of something unknown
        raise CliError(one_line(str(e.args[0]) if e.args else "not found", 400)) from None


def _known_queue(queue: SessionQueueBase, queue_id: str) -> str:
    from invokeai_core.services.base import DEFAULT_QUEUE_ID, check_queue_id

    with _bad_input():
        check_queue_id(queue_id)
        known = queue.queue_ids()
    if queue_id != DEFAULT_QUEUE_ID and queue_id not in known:
        names = ", ".join(sorted({DEFAULT_QUEUE_ID, *known}))
        raise CliError(f"unknown queue '{queue_id}' (queues: {names})")
    return queue_id


queue_option = click.option(
    "-q", "--queue", "queue_id", default="default", show_default=True, metavar="QUEUE_ID", help="The queue."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _item_row(item: QueueItem) -> list[str]:
    error = f"{item.error_type}: {one_line(item.error_message or '', 50)}" if item.error_type else ""
    return [
        str(item.item_id),
        item.status,
        str(item.priority),
        item.batch_id[:12],
        item.session_id[:12],
        item.created_at[:19].replace("T", " "),
        error,
    ]


ITEM_HEADERS = ["ITEM", "STATUS", "PRIORITY", "BATCH", "SESSION", "CREATED", "ERROR"]


# == queue =========================================================================================
@click.group("queue")
def queue_group() -> None:
    """The session queue: status, items, enqueue, move, cancel, retry, clear, prune, pause, resume, process.

    Queued sessions are run by a queue processor: a server's, or `invokeai queue process`.
    """


@queue_group.command("status")
@click.option("-q", "--queue", "queue_id", default=None, metavar="QUEUE_ID", help="One queue (default: every queue).")
@json_option
@pass_state
def queue_status(state: CliState, queue_id: str | None, as_json: bool) -> None:
    """Item counts by status, per queue, and whether the queue is paused."""
    queue = state.invoker().services.queue
    with _bad_input():
        ids = [_known_queue(queue, queue_id)] if queue_id is not None else sorted({"default", *queue.queue_ids()})
        counts = [queue.status(q) for q in ids]
    if as_json:
        echo_json([c.model_dump() for c in counts] if queue_id is None else counts[0].model_dump())
        return
    rows = [
        [c.queue_id, "paused" if c.paused else "active", *(str(getattr(c, s)) for s in STATUSES), str(c.total)]
        for c in counts
    ]
    click.echo(table(rows, ["QUEUE", "STATE", "PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELED", "TOTAL"]))


@queue_group.command("list")
@queue_option
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only items in this status.")
@click.option("--cursor", type=int, default=None, metavar="ITEM_ID", help="Start after this item (queue order).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True, help="Items per page.")
@json_option
@pass_state
def queue_list(
    state: CliState, queue_id: str, status: str | None, cursor: int | None, limit: int, as_json: bool
) -> None:
    """Items in queue order (priority, then item id), a page at a time."""
    queue = state.invoker().services.queue
    _known_queue(queue, queue_id)
    with _bad_input():
        items = queue.list_items(queue_id, cursor=cursor, limit=limit, status=status)  # type: ignore[arg-type]
    if as_json:
        echo_json([i.model_dump(exclude={"graph"}) for i in items])
        return
    click.echo(table([_item_row(i) for i in items], ITEM_HEADERS))
    if len(items) == limit:
        click.echo(f"(more: --cursor {items[-1].item_id})")


@queue_group.command("show")
@click.argument("item_id", type=int)
@json_option
@pass_state
def queue_show(state: CliState, item_id: int, as_json: bool) -> None:
    """One item: status, times, error, the values its batch set, and its graph (with --json)."""
    queue = state.invoker().services.queue
    with _bad_input():
        item = queue.get_item(item_id)
    if as_json:
        echo_json(item.model_dump())
        return
    for name in ("item_id", "queue_id", "batch_id", "session_id", "status", "priority"):
        click.echo(f"{name}: {getattr(item, name)}")
    for name in ("created_at", "started_at", "completed_at"):
        click.echo(f"{name}: {getattr(item, name) or '-'}")
    for fv in item.field_values:
        click.echo(f"value: {fv.get('node_path')}.{fv.get('field_name')} = {json.dumps(fv.get('value'))}")
    click.echo(f"nodes: {len(item.graph.get('nodes', {}))}")
    if item.error_type:
        click.echo(f"error: {item.error_type}: {item.error_message}")


@queue_group.command("enqueue")
@click.argument("file", metavar="FILE|-")
@queue_option
@click.option("--prepend", is_flag=True, help="Put the batch before everything pending.")
@click.option("--runs", type=click.IntRange(1), default=None, help="Repeat the expansion (a bare graph file).")
@click.option("--priority", type=int, default=None, help="The batch's priority (higher runs first).")
@json_option
@pass_state
def queue_enqueue(
    state: CliState,
    file: str,
    queue_id: str,
    prepend: bool,
    runs: int | None,
    priority: int | None,
    as_json: bool,
) -> None:
    """Enqueue a batch from a JSON file (or a graph file, run as is), all or nothing.

    \b
    A batch file (examples/batch.json):
      {"graph":    a graph: {"nodes": {...}, "edges": [...]}, as `invokeai run -f` takes,
       "data":     [GROUP, ...] (optional): each GROUP a list of
                   {"node_path": NODE_ID, "field_name": INPUT, "items": [VALUE, ...]},
       "runs":     N (optional, default 1): repeat the whole expansion,
       "priority": P (optional, default 0): higher runs first,
       "batch_id": ID (optional, default a new one)}

    \b
    Each item of a datum replaces that input of one copy of the graph (the input must not be fed by an
    edge). The data of one group are zipped (equal lengths: the i-th items go together); groups are
    combined as a product, the last group varying fastest; `runs` repeats it all. examples/batch.json
    (a and b zipped over 3 values, times 2 scales) enqueues 3 x 2 = 6 items. Every value is checked
    before anything is enqueued: a bad one names the node and the field, and nothing is enqueued.
    """
    from invokeai_core.errors import check_text

    text = read_input(file)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CliError(f"{file}: not valid JSON: {e}") from None
    if isinstance(data, dict) and "graph" not in data and "nodes" in data:
        data = {"graph": data}
    if isinstance(data, dict):
        if runs is not None:
            data["runs"] = runs
        if priority is not None:
            data["priority"] = priority
    with _bad_input():
        check_text(data)
        result = state.invoker().enqueue_batch(queue_id, data, prepend=prepend)
    if as_json:
        echo_json(result.model_dump())
        return
    ids = result.item_ids
    span = f"{ids[0]}" if len(ids) == 1 else f"{ids[0]}-{ids[-1]}"
    click.echo(
        f"enqueued {result.enqueued} item(s) ({span}) in queue '{result.queue_id}', batch {result.batch_id}, "
        f"priority {result.priority}"
    )


@queue_group.command("cancel")
@click.argument("item_ids", type=int, nargs=-1)
@queue_option
@click.option("--batch", "batch_ids", multiple=True, metavar="BATCH_ID", help="Cancel a batch (repeatable).")
@click.option("--all", "all_pending", is_flag=True, help="Cancel every pending item (not the running one).")
@json_option
@pass_state
def queue_cancel(
    state: CliState,
    item_ids: tuple[int, ...],
    queue_id: str,
    batch_ids: tuple[str, ...],
    all_pending: bool,
    as_json: bool,
) -> None:
    """Cancel items by id (pending or running), whole batches, or --all pending items."""
    if not item_ids and not batch_ids and not all_pending:
        raise CliError("give item ids, --batch BATCH_ID or --all")
    queue = state.invoker().services.queue
    canceled: list[int] = []
    with _bad_input():
        if item_ids:
            for i in item_ids:
                queue.get_item(i)  # refuse unknown ids before changing anything
        if batch_ids or all_pending:
            _known_queue(queue, queue_id)
        if batch_ids:  # refuses unknown batches before anything changed
            canceled += queue.cancel_batch(queue_id, list(batch_ids))
        if item_ids:
            canceled += queue.cancel_items(list(item_ids))
        if all_pending:
            canceled += queue.cancel_all_except_current(queue_id)
    if as_json:
        echo_json({"canceled": canceled})
    else:
        click.echo(f"canceled {len(canceled)} item(s)" + (f": {', '.join(map(str, canceled))}" if canceled else ""))


@queue_group.command("retry")
@click.argument("item_ids", type=int, nargs=-1, required=True)
@json_option
@pass_state
def queue_retry(state: CliState, item_ids: tuple[int, ...], as_json: bool) -> None:
    """Enqueue failed or canceled items again (as new items)."""
    queue = state.invoker().services.queue
    with _bad_input():
        new_ids = queue.retry_items(list(item_ids))
    if as_json:
        echo_json({"retried": new_ids})
    else:
        click.echo(f"re-queued {len(new_ids)} item(s)" + (f" as {', '.join(map(str, new_ids))}" if new_ids else ""))


@queue_group.command("move")
@click.argument("item_id", type=int)
@click.option("--front", "where", flag_value="front", help="Before every pending item of its queue.")
@click.option("--back", "where", flag_value="back", help="After every pending item of its queue.")
@click.option("--before", "before", type=int, default=None, metavar="OTHER", help="Just before this pending item.")
@json_option
@pass_state
def queue_move(state: CliState, item_id: int, where: str | None, before: int | None, as_json: bool) -> None:
    """Move a pending item to the front or back of its queue, or before another pending item.

    The item takes the priority of where it lands (front: the highest pending priority, back: the
    lowest, --before: the other item's); see docs/architecture.md, "Reordering the queue"."""
    if (where is None) == (before is None):
        raise CliError("give exactly one of --front, --back or --before OTHER")
    queue = state.invoker().services.queue
    with _bad_input():
        item = queue.move_item(item_id, to=where, before=before)  # type: ignore[arg-type]
        order = [i.item_id for i in queue.list_items(item.queue_id, status="pending", limit=100_000)]
    if as_json:
        echo_json({"item": item.model_dump(exclude={"graph"}), "pending_order": order})
        return
    place = order.index(item_id) + 1
    click.echo(
        f"moved item {item_id} to place {place} of {len(order)} pending in queue '{item.queue_id}' "
        f"(priority {item.priority})"
    )


@queue_group.command("clear")
@queue_option
@pass_state
def queue_clear(state: CliState, queue_id: str) -> None:
    """Delete every item of the queue except the running one."""
    queue = state.invoker().services.queue
    _known_queue(queue, queue_id)
    with _bad_input():
        n = queue.clear(queue_id)
    click.echo(f"deleted {n} item(s) from queue '{queue_id}'")


@queue_group.command("prune")
@queue_option
@pass_state
def queue_prune(state: CliState, queue_id: str) -> None:
    """Delete the finished items (completed, failed, canceled) of the queue."""
    queue = state.invoker().services.queue
    _known_queue(queue, queue_id)
    with _bad_input():
        n = queue.prune(queue_id)
    click.echo(f"pruned {n} item(s) from queue '{queue_id}'")


@queue_group.command("pause")
@queue_option
@pass_state
def queue_pause(state: CliState, queue_id: str) -> None:
    """Stop handing out the queue's items (the running one finishes); persists across restarts."""
    queue = state.invoker().services.queue
    _known_queue(queue, queue_id)
    with _bad_input():
        queue.pause(queue_id)
    click.echo(f"queue '{queue_id}' paused")


@queue_group.command("resume")
@queue_option
@pass_state
def queue_resume(state: CliState, queue_id: str) -> None:
    """Hand out the queue's items again."""
    queue = state.invoker().services.queue
    _known_queue(queue, queue_id)
    with _bad_input():
        queue.resume(queue_id)
    click.echo(f"queue '{queue_id}' resumed")


def _idle(queue: SessionQueueBase) -> bool:
    for q in queue.queue_ids():
        counts = queue.status(q)
        if counts.in_progress or (counts.pending and not counts.paused):
            return False
    return True


@queue_group.command("process")
@click.option("--until-empty", is_flag=True, help="Exit once nothing is pending (in unpaused queues) or running.")
@click.option("--workers", type=click.IntRange(1), default=None, help="Worker threads (default: queue_workers).")
@pass_state
def queue_process(state: CliState, until_empty: bool, workers: int | None) -> None:
    """Run queued sessions in this process until interrupted (Ctrl-C, SIGTERM) or, with
    --until-empty, until the queue is drained. Recovers from a crash first."""
    from invokeai_core.events import EventBase

    config = state.config
    if workers is not None:
        config.queue_workers = workers
    invoker = state.invoker()

    def show(event: EventBase) -> None:
        status = getattr(event, "status", "")
        error = getattr(event, "error_type", None)
        suffix = f" ({error}: {one_line(getattr(event, 'error_message', '') or '', 100)})" if error else ""
        click.echo(f"item {event.item_id} [{event.queue_id}] {status}{suffix}")
        sys.stdout.flush()

    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        with _bad_input():
            invoker.start(process_queue=True)
        try:
            processor = invoker.queue_processor
            assert processor is not None
            for item in processor.recovered:
                click.echo(
                    f"item {item.item_id} [{item.queue_id}] was running when the process died: "
                    f"{'re-queued' if item.status == 'pending' else 'failed'}"
                )
            invoker.services.events.subscribe(show, names=["queue_item_status_changed"])
            where = str(config.db_file) if config.services.queue == "sqlite" else f"the '{config.services.queue}' store"
            click.echo(f"processing the queue in {where}" + ("" if until_empty else " (Ctrl-C stops)"), err=True)
            queue = invoker.services.queue
            while not stop.wait(0.1):
                if until_empty and _idle(queue):
                    break
        except KeyboardInterrupt:
            pass
        finally:
            invoker.stop()
    finally:
        signal.signal(signal.SIGTERM, previous)


# == sessions ======================================================================================
@click.group("sessions")
def sessions_group() -> None:
    """Stored sessions: list and show."""


@sessions_group.command("list")
@click.option("--query", default=None, help="Only sessions whose id or node types contain this text.")
@click.option("--offset", type=click.IntRange(0), default=0, show_default=True)
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@json_option
@pass_state
def sessions_list(state: CliState, query: str | None, offset: int, limit: int, as_json: bool) -> None:
    """Sessions, newest first."""
    sessions = state.invoker().services.sessions
    with _bad_input():
        page = sessions.list(offset=offset, limit=limit, query=query)
    if as_json:
        echo_json(page.model_dump())
        return
    rows = [[s.id, s.status, str(s.nodes), s.created_at[:19].replace("T", " ")] for s in page.items]
    click.echo(table(rows, ["SESSION", "STATUS", "NODES", "CREATED"]))
    shown = f"{offset + 1}-{offset + len(page.items)}" if page.items else "none"
    click.echo(f"({shown} of {page.total})")


@sessions_group.command("show")
@click.argument("session_id")
@json_option
@pass_state
def sessions_show(state: CliState, session_id: str, as_json: bool) -> None:
    """A session's status, results and errors (as `invokeai run --json` prints them)."""
    invoker = state.invoker()
    with _bad_input():
        session = invoker.services.sessions.get(session_id)
    if as_json:
        out = session.result_json()
        out.update(created_at=session.created_at, updated_at=session.updated_at, graph=session.graph.to_dict())
        click.echo(json.dumps(out))
        return
    click.echo(f"session {session.id}: {session.status}")
    click.echo(f"created {session.created_at}, updated {session.updated_at}, {len(session.graph.nodes)} node(s)")
    for node_id, value in session.results_by_source().items():
        node = session.graph.nodes[node_id]
        outputs = value if isinstance(value, list) else [value]
        for i, output in enumerate(outputs):
            label = node_id if not isinstance(value, list) else f"{node_id}[{i}]"
            data = output.model_dump(mode="json")
            fields = ", ".join(
                f"{k}={one_line(json.dumps(data[k], default=str), 60)}" for k in type(output).model_fields if k in data
            )
            click.echo(f"{label} ({node.invocation_type}): {fields}")
    for node_id, err in session.errors_by_source().items():
        click.echo(f"{node_id}: error: {err.type}: {err.message}")

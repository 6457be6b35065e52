"""Running pipelines in one stored session: build, commit, run, print, export.

`CliSession` is shared by `invokeai run PIPELINE` (one line) and the shell (many lines in one
session). A line is all or nothing: it is built and checked against a copy of the session's graph
(`pipeline.PipelineBuilder`), then its images are uploaded, its nodes and edges appended to the
session through the Invoker (which stores the session through the configured `sessions` service),
and the session is run until nothing more is ready. Results print as one line per node output;
image outputs print their name and file path, and `--out DIR` copies their PNG files there.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

from invokeai_core.cli.pipeline import Built, Pipeline, PipelineBuilder, hoist_options
from invokeai_core.cli.state import CliError
from invokeai_core.errors import GraphError

if TYPE_CHECKING:
    from invokeai_core.graph import Graph
    from invokeai_core.invoker import Invoker
    from invokeai_core.session import Session

#: `run` options that may also be written inside or after a pipeline: flag -> number of values.
RUN_FLAGS: dict[str, int] = {"--json": 0, "--out": 1, "--timeout": 1, "--progress": 0, "--no-progress": 0}


@dataclass
class RunOptions:
    as_json: bool = False
    out: str | None = None
    timeout: float | None = None
    progress: bool | None = None  # None: when stderr is a terminal

    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        try:
            return sys.stderr.isatty()
        except (AttributeError, ValueError):
            return False


# -- printing -------------------------------------------------------------------------------------
def _format_value(value: Any) -> str:
    if isinstance(value, dict) and set(value) == {"image_name"}:
        return f"image {value['image_name']}"
    text = json.dumps(value, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


def image_names(value: Any) -> list[str]:
    """Every image referenced by an output value (an `ImageField`, or lists/dicts holding some)."""
    from invokeai_core.invocations.fields import ImageField

    if isinstance(value, ImageField):
        return [value.image_name]
    if isinstance(value, list | tuple):
        return [n for v in value for n in image_names(v)]
    if isinstance(value, dict):
        if set(value) == {"image_name"} and isinstance(value["image_name"], str):
            return [value["image_name"]]
        return [n for v in value.values() for n in image_names(v)]
    return []


def print_results(session: Session, node_ids: list[str], invoker: Invoker | None, out: TextIO | None = None) -> None:
    """One line per output of each node (`id (type): field=value ...`), image paths included,
    then the errors on stderr."""
    from invokeai_core.invocations.fields import ImageField

    images = invoker.services.images if invoker is not None else None
    results = session.results_by_source()
    for node_id in node_ids:
        if node_id not in results:
            continue
        value = results[node_id]
        node = session.graph.nodes[node_id]
        outputs = value if isinstance(value, list) else [value]
        for i, output in enumerate(outputs):
            label = node_id if not isinstance(value, list) else f"{node_id}[{i}]"
            parts = []
            for name in type(output).model_fields:
                v = getattr(output, name)
                if isinstance(v, ImageField):
                    path = images.get_path(v.image_name) if images is not None else None
                    parts.append(f"{name}=image {v.image_name}" + (f" ({path})" if path else ""))
                else:
                    parts.append(
                        f"{name}={_format_value(v.model_dump(mode='json') if hasattr(v, 'model_dump') else v)}"
                    )
            click.echo(f"{label} ({node.invocation_type}): {', '.join(parts)}", file=out)
        if isinstance(value, list) and not value:
            click.echo(f"{node_id} ({node.invocation_type}): ran 0 times", file=out)
    wanted = set(node_ids)
    for node_id, err in session.errors_by_source().items():
        if node_id in wanted:
            click.echo(f"{node_id}: error: {err.type}: {err.message}", err=True)


def result_json(session: Session, node_ids: list[str] | None = None) -> dict[str, Any]:
    """`Session.result_json()`, optionally limited to some nodes (a shell line's)."""
    data = session.result_json()
    if node_ids is not None:
        keep = set(node_ids)
        data["results"] = {k: v for k, v in data["results"].items() if k in keep}
        data["errors"] = {k: v for k, v in data["errors"].items() if k in keep}
    return data


def export_images(session: Session, node_ids: list[str], invoker: Invoker, out_dir: str) -> list[Path]:
    """Copy the PNG of every image the nodes output into `out_dir`."""
    folder = Path(out_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    seen: set[str] = set()
    files = invoker.services.images
    results = session.results_by_source()
    for node_id in node_ids:
        value = results.get(node_id)
        if value is None:
            continue
        for output in value if isinstance(value, list) else [value]:
            for name in image_names(output.model_dump(mode="json")):
                if name in seen:
                    continue
                seen.add(name)
                target = folder / name
                target.write_bytes(files.get_bytes(name))
                written.append(target)
    return written


# -- the session ----------------------------------------------------------------------------------
class CliSession:
    """One stored session driven from the command line, line by line."""

    def __init__(
        self, invoker: Invoker, options: RunOptions, *, info_prefix: str = "invokeai run ", err: TextIO | None = None
    ) -> None:
        from invokeai_core.cli.node_commands import NodeCommands

        self.invoker = invoker
        self.options = options
        self.info_prefix = info_prefix
        self.commands = NodeCommands(invoker.registry)
        self.session_id: str | None = None
        # The session object, held: stores hand out the live object while someone holds it, so every
        # later read (`invoke`, the next line) is this object, never a reload and re-parse of the graph.
        self._held: Session | None = None
        self.defaults: dict[str, str] = {}
        self.extra_commands: list[str] = []  # names the shell knows (for "did you mean")
        self.err = err

    # -- state --------------------------------------------------------------------------------
    def session(self) -> Session | None:
        return self.invoker.get_session(self.session_id) if self.session_id is not None else None

    def graph(self) -> Graph:
        from invokeai_core.graph import Graph

        session = self.session()
        return session.graph if session is not None else Graph(self.invoker.registry)

    def use(self, session: Session) -> None:
        """Drive this (stored) session, held (see `_held`)."""
        self._held = session
        self.session_id = session.id

    def new_session(self) -> None:
        """Start over: later lines go to a fresh session (created when the first line runs)."""
        self.session_id = None
        self._held = None

    # -- a line -------------------------------------------------------------------------------
    def build(self, pipeline: Pipeline, *, hoist: bool = False) -> tuple[Built, Any]:
        """Check a pipeline; returns what it adds and the image resolver holding its uploads.
        With `hoist`, `run` options inside the segments (`--json`, `--out DIR`...) are applied."""
        from invokeai_core.cli.node_commands import ImageResolver

        session = self.session()
        if session is not None and session.status in ("failed", "canceled"):
            raise CliError(
                f"session {session.id} {session.status}, so it takes no more lines; type `new` to start a fresh session"
            )
        resolver = ImageResolver(self.invoker.services)
        builder = PipelineBuilder(
            self.commands,
            session.graph if session is not None else self.graph(),
            defaults=self.defaults,
            resolver=resolver,
            info_prefix=self.info_prefix,
            extra_commands=self.extra_commands,
        )
        segments = pipeline.segments
        if hoist:
            segments, hoisted = self._hoist(builder, segments)
            if hoisted:
                self._apply_run_options(hoisted)
        built = builder.build(pipeline, segments)
        try:  # the nodes' own checks against the services (an installed model ...), before any upload
            self.invoker.preflight(built.nodes, built.edges)
        except GraphError as e:
            node = builder.graph.nodes.get(e.node_id or "")
            raise CliError(f"{node.invocation_type}: {e}" if node is not None else str(e)) from None
        return built, resolver

    def _hoist(self, builder: PipelineBuilder, segments: list[list[str]]) -> tuple[list[list[str]], list[str]]:
        out: list[list[str]] = []
        hoisted: list[str] = []
        for words in segments:
            cmd = builder.command(words[0])
            kept, moved = hoist_options(cmd, words[1:], RUN_FLAGS)
            out.append([words[0], *kept])
            hoisted.extend(moved)
        return out, hoisted

    def _apply_run_options(self, words: list[str]) -> None:
        ctx = RUN_TAIL.make_context(self.info_prefix.strip(), list(words))
        values = ctx.params
        merge_run_options(self.options, values, ctx)

    def commit(self, built: Built, resolver: Any) -> str:
        """Upload the line's images and append its nodes and edges to the (stored) session."""
        resolver.upload()
        sid = self.session_id
        if sid is None:
            session = self.invoker.create_session()
            self.use(session)
            sid = session.id
        self.invoker.add_nodes(sid, {"nodes": {n.id: n for n in built.nodes}, "edges": list(built.edges)})
        return sid

    def run(self) -> Session:
        """Run everything ready in the session; Ctrl-C cancels it. Progress bars when enabled."""
        from invokeai_core.cli.progress import ProgressDisplay

        assert self.session_id is not None
        sid = self.session_id
        invoker = self.invoker
        display = None
        if self.options.show_progress():
            display = ProgressDisplay(sys.stderr).attach(invoker.services.events, sid)
        try:
            invoker.invoke(sid, all=True)
            try:
                return invoker.wait(sid, self.options.timeout)
            except KeyboardInterrupt:
                invoker.cancel(sid)
                click.echo("\ncanceled", err=True)
                return invoker.wait(sid, 30)
            except TimeoutError:
                invoker.cancel(sid)
                invoker.wait(sid, 30)
                raise click.ClickException(
                    f"gave up after {self.options.timeout} s; the session was canceled"
                ) from None
        finally:
            if display is not None:
                display.detach()

    def report(self, session: Session, node_ids: list[str], *, with_status: bool) -> int:
        """Print (or JSON) the results of these nodes, export images; the exit status."""
        if self.options.as_json:
            click.echo(json.dumps(result_json(session, None if with_status else node_ids)))
        else:
            print_results(session, node_ids, self.invoker)
        if self.options.out:
            for path in export_images(session, node_ids, self.invoker, self.options.out):
                click.echo(f"exported {path}", err=self.options.as_json)
        if with_status and not self.options.as_json:
            click.echo(f"session {session.id}: {session.status}")
        elif session.status in ("failed", "canceled") and not self.options.as_json:
            click.echo(
                f"session {session.id} {session.status}: later lines are refused until `new` starts a fresh session",
                err=True,
            )
        return 0 if session.status == "completed" else 1

    def execute(self, pipeline: Pipeline, *, hoist: bool = False, with_status: bool = False) -> int:
        """Build, commit, run and report one line. Bad input raises (`CliError` / click usage errors)."""
        built, resolver = self.build(pipeline, hoist=hoist)
        if built.help_shown or not built.nodes:
            return 0
        for note in built.notes:
            click.echo(note, err=True)
        self.commit(built, resolver)
        session = self.run()
        return self.report(session, built.node_ids, with_status=with_status)


# -- `run` options given after a pipeline string ----------------------------------------------------
def _run_option_params() -> list[click.Parameter]:
    return [
        click.Option(["as_json", "--json"], is_flag=True, default=None, help="Print the session result as JSON."),
        click.Option(
            ["out", "--out"], type=click.Path(file_okay=False), default=None, help="Also export images as PNG here."
        ),
        click.Option(["timeout", "--timeout"], type=float, default=None, help="Give up after this many seconds."),
        click.Option(["progress", "--progress/--no-progress"], default=None, help="Show progress bars."),
    ]


RUN_TAIL = click.Command("run", params=_run_option_params(), add_help_option=False)


def merge_run_options(options: RunOptions, values: dict[str, Any], ctx: click.Context | None = None) -> RunOptions:
    from click.core import ParameterSource

    for key in ("as_json", "out", "timeout", "progress"):
        given = values.get(key)
        if ctx is not None and ctx.get_parameter_source(key) is not ParameterSource.COMMANDLINE:
            continue
        if given is not None:
            setattr(options, key, given)
    return options

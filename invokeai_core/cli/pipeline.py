"""Pipelines: `add --a 2 --b 3 | mul --b 4` -> segments of words, and segments -> nodes and edges.

Splitting
---------
A pipeline comes either as one string (`invokeai run "add --a 2 | mul"`, or a shell line) or as
argv words with a literal `|` word (`invokeai run add --a 2 '|' mul`). Strings are split like a
POSIX shell would split words (single quotes, double quotes, backslash escapes); an unquoted `|`
separates segments, with or without spaces around it. A line that starts with `|` continues from
the last node of the session (the shell).

Building
--------
Each segment is one node: its command name is the node's type id, its options are the node's input
fields (`node_commands`). Ids are numbers counting up across the whole session (or `--id NAME`).
For each segment, in order of precedence:

1. an option given explicitly sets the input;
2. `--link SOURCE FIELD DEST_FIELD` connects an output of an earlier node (an id, or `-1` for the
   previous node, `-2` for the one before...) to the input;
3. otherwise the input is auto-linked from the previous segment's output of the same name, if
   the types are compatible (the kernel's `Graph.auto_link_edges` rule);
4. otherwise a shell default (`default FIELD VALUE`) sets it;
5. otherwise the field's own default applies.

Everything is checked against a scratch copy of the session's graph, so a bad line changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from invokeai_core.cli.state import CliError

if TYPE_CHECKING:
    from invokeai_core.cli.node_commands import ImageResolver, NodeCommand, NodeCommands
    from invokeai_core.graph import Edge, Graph
    from invokeai_core.invocations.baseinvocation import BaseInvocation

PIPE = "|"
_RELATIVE = re.compile(r"^-\d+$")


@dataclass
class Pipeline:
    """The segments of one pipeline; `continues` when it starts with `|` (link to the last node)."""

    segments: list[list[str]]
    continues: bool = False


def split_words(text: str) -> list[tuple[str, bool]]:
    """Split a line into words like a POSIX shell; each word with whether it is an unquoted `|`."""
    words: list[tuple[str, bool]] = []
    buf: list[str] = []
    in_word = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            if in_word:
                words.append(("".join(buf), False))
                buf, in_word = [], False
            i += 1
        elif c == PIPE:
            if in_word:
                words.append(("".join(buf), False))
                buf, in_word = [], False
            words.append((PIPE, True))
            i += 1
        elif c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                raise CliError(f"unclosed single quote in: {text}")
            buf.append(text[i + 1 : end])
            in_word = True
            i = end + 1
        elif c == '"':
            i += 1
            while True:
                if i >= n:
                    raise CliError(f"unclosed double quote in: {text}")
                c = text[i]
                if c == '"':
                    i += 1
                    break
                if c == "\\" and i + 1 < n and text[i + 1] in '"\\$`':
                    buf.append(text[i + 1])
                    i += 2
                    continue
                buf.append(c)
                i += 1
            in_word = True
        elif c == "\\":
            if i + 1 < n:
                buf.append(text[i + 1])
            i += 2
            in_word = True
        else:
            buf.append(c)
            in_word = True
            i += 1
    if in_word:
        words.append(("".join(buf), False))
    return words


def _group(words: list[tuple[str, bool]]) -> Pipeline:
    segments: list[list[str]] = [[]]
    for word, is_pipe in words:
        if is_pipe:
            segments.append([])
        else:
            segments[-1].append(word)
    continues = False
    if len(segments) > 1 and not segments[0]:
        continues = True
        segments = segments[1:]
    if any(not s for s in segments):
        if len(segments) == 1:
            return Pipeline([], continues)
        raise CliError("empty command in the pipeline: '|' must have a command on each side")
    return Pipeline(segments, continues)


def parse_line(text: str) -> Pipeline:
    """A pipeline from one string."""
    return _group(split_words(text))


def parse_argv(words: list[str]) -> tuple[Pipeline, list[str]]:
    """A pipeline from `invokeai run` arguments, and the words left for `run`'s own options.

    If the first word holds a whole pipeline (it has spaces or a `|`), it is split as a string and
    the words after it are `run` options (`invokeai run "add --a 1 | mul" --json`); otherwise the
    words are the pipeline itself, with `|` words between segments."""
    if not words:
        return Pipeline([]), []
    first = words[0]
    if first != PIPE and (PIPE in first or any(c.isspace() for c in first)):
        return parse_line(first), list(words[1:])
    return _group([(w, w == PIPE) for w in words]), []


def hoist_options(cmd: NodeCommand, words: list[str], foreign: dict[str, int]) -> tuple[list[str], list[str]]:
    """Move options that belong to `run` (`foreign`: flag -> number of values) out of a segment,
    unless the node has an option of that name. Values of the node's own options are skipped, so
    `string --value --json` keeps `--json` as the value."""
    own = cmd.option_flags()
    kept: list[str] = []
    hoisted: list[str] = []
    i = 0
    while i < len(words):
        w = words[i]
        name = w.split("=", 1)[0] if w.startswith("--") else w
        if w == "--":
            kept.extend(words[i:])
            break
        opt = own.get(name)
        if opt is not None:
            takes = 0 if (opt.is_flag or "=" in w) else opt.nargs
            kept.extend(words[i : i + 1 + takes])
            i += 1 + takes
            continue
        if name in foreign:
            takes = 0 if "=" in w else foreign[name]
            hoisted.extend(words[i : i + 1 + takes])
            i += 1 + takes
            continue
        kept.append(w)
        i += 1
    return kept, hoisted


# -- building -------------------------------------------------------------------------------------
@dataclass
class Built:
    """What a line adds to the session: new nodes (in order) and edges, plus notes for the user."""

    nodes: list[BaseInvocation] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    help_shown: bool = False

    @property
    def node_ids(self) -> list[str]:
        return [n.id for n in self.nodes]


def next_node_id(graph: Graph) -> str:
    n = len(graph.nodes) + 1
    while str(n) in graph.nodes:
        n += 1
    return str(n)


def unknown_command(name: str, known: list[str]) -> CliError:
    from invokeai_core.cli.node_commands import closest

    near = closest(name, known)
    hint = f"did you mean: {', '.join(near)}?" if near else "see `invokeai nodes` for the node types"
    return CliError(f"unknown command '{name}' ({hint})")


class PipelineBuilder:
    """Builds the nodes and edges of one pipeline against (a copy of) the session's graph."""

    def __init__(
        self,
        commands: NodeCommands,
        graph: Graph,
        *,
        defaults: dict[str, str] | None = None,
        resolver: ImageResolver | None = None,
        info_prefix: str = "",
        extra_commands: list[str] | None = None,
    ) -> None:
        self.commands = commands
        self.graph = graph.copy()
        self.order = list(self.graph.nodes)
        self.defaults = dict(defaults or {})
        self.resolver = resolver
        self.info_prefix = info_prefix
        self.extra_commands = extra_commands or []

    def command(self, name: str) -> NodeCommand:
        cmd = self.commands.get(name)
        if cmd is None:
            raise unknown_command(name, self.commands.names() + self.extra_commands)
        return cmd

    def build(self, pipeline: Pipeline, parsed_words: list[list[str]] | None = None) -> Built:
        """Parse and check every segment; raise `CliError` or a click usage error on bad input."""
        built = Built()
        if pipeline.continues and not self.order:
            raise CliError("nothing to continue from: the line starts with '|' but the session has no node yet")
        previous = self.order[-1] if pipeline.continues else None
        segments = parsed_words if parsed_words is not None else pipeline.segments
        for words in segments:
            cmd = self.command(words[0])
            info_name = f"{self.info_prefix}{words[0]}"
            seg = cmd.parse_segment(words[1:], info_name, self.resolver)
            if seg.help_shown:
                built.help_shown = True
                return built
            node = self._add_segment(cmd, seg, previous, built)
            previous = node.id
        for node in built.nodes:
            missing = self.graph.missing_inputs(node.id)
            if missing:
                name = missing[0]
                raise CliError(
                    f"node '{node.id}' ({node.invocation_type}): required input '{name}' is neither set nor "
                    f"linked (give --{name.replace('_', '-')} VALUE or --link SOURCE FIELD {name})"
                )
        return built

    # -- one segment --------------------------------------------------------------------------
    def _resolve_source(self, ref: str, link: tuple[str, str, str], dest: str) -> str:
        src, sfield, dfield = link
        where = f"cannot link {src}.{sfield} -> {dest}.{dfield}"
        if _RELATIVE.match(ref):
            back = -int(ref)
            if back == 0 or back > len(self.order):
                have = len(self.order)
                raise CliError(
                    f"{where}: there is no node {back} back (the session has {have} node{'s' * (have != 1)} before "
                    f"'{dest}')"
                )
            return self.order[-back]
        if ref not in self.graph.nodes:
            known = ", ".join(self.order[-10:]) or "none yet"
            raise CliError(f"{where}: no node '{ref}' in this session (nodes: {known})")
        return ref

    def _add_segment(self, cmd: NodeCommand, seg: Any, previous: str | None, built: Built) -> BaseInvocation:
        from invokeai_core.errors import GraphError

        graph = self.graph
        cls = cmd.node_class
        type_id = cls.invocation_type
        node_id = seg.node_id
        if node_id is None:
            node_id = next_node_id(graph)
        elif not node_id or node_id.startswith("-") or "#" in node_id or node_id in graph.nodes:
            why = "is already used" if node_id in graph.nodes else "may not be empty, start with '-' or contain '#'"
            raise CliError(f"{type_id}: --id '{node_id}' {why}")
        explicit: dict[str, Any] = dict(seg.values)

        # explicit links: resolve the sources now (they name earlier nodes)
        links: list[tuple[str, str, str, str]] = []  # (source id, source field, dest field, as written)
        for link in seg.links:
            src_ref, sfield, dfield = link
            src_id = self._resolve_source(src_ref, link, node_id)
            if dfield in explicit:
                raise CliError(
                    f"{type_id} (node '{node_id}'): input '{dfield}' is given both as "
                    f"--{dfield.replace('_', '-')} and by --link {src_ref} {sfield} {dfield}; give one"
                )
            links.append((src_id, sfield, dfield, src_ref))
        linked_explicitly = {dfield for _, _, dfield, _ in links}

        # auto-links from the previous segment, computed on a scratch copy with only explicit values set
        try:
            base = graph.parse_node({"id": node_id, "type": type_id, **explicit})
        except GraphError as e:  # a rule of the node's own (a limit, high > low, ...)
            raise CliError(f"{type_id}: {e}") from None
        auto: list[Edge] = []
        if previous is not None:
            scratch = graph.copy()
            scratch.add_node(base)
            auto = scratch.auto_link_edges(previous, base)
            auto = [e for e in auto if e.destination.field not in linked_explicitly]
            if not auto and not links:
                note = self._no_link_note(previous, base, explicit)
                if note:
                    built.notes.append(note)
        linked = linked_explicitly | {e.destination.field for e in auto}

        # shell defaults fill what is neither given nor linked
        values = dict(explicit)
        for fname, text in self.defaults.items():
            if fname in cmd.specs and fname not in explicit and fname not in linked:
                try:
                    values[fname] = cmd.convert_text(fname, text, self.resolver)
                except ValueError as e:
                    raise CliError(f"default {fname}={text!r} does not fit '{type_id}' input '{fname}': {e}") from None
        try:
            node = graph.add_node({"id": node_id, "type": type_id, **values})
        except GraphError as e:
            raise CliError(f"{type_id}: {e}") from None
        for auto_edge in auto:
            try:
                graph.add_edge(auto_edge)
            except GraphError as err:  # pragma: no cover - auto-links are pre-checked
                raise CliError(f"auto-link {auto_edge}: {err}") from None
            built.edges.append(auto_edge)
        for src_id, sfield, dfield, src_ref in links:
            edge = self._check_link(src_id, sfield, node, dfield, src_ref)
            try:
                graph.add_edge(edge)
            except GraphError as err:
                raise CliError(
                    f"cannot link {self._end(src_id, sfield)} -> {self._end(node_id, dfield)}: {err.reason}"
                ) from None
            built.edges.append(edge)
        self.order.append(node_id)
        built.nodes.append(node)
        return node

    def _end(self, node_id: str, fld: str) -> str:
        node = self.graph.nodes.get(node_id)
        return f"{node_id}.{fld}" + (f" ({node.invocation_type})" if node is not None else "")

    def _check_link(self, src_id: str, sfield: str, node: BaseInvocation, dfield: str, src_ref: str) -> Edge:
        from invokeai_core.graph import Edge
        from invokeai_core.invocations.fields import Input, field_extra
        from invokeai_core.typecompat import are_types_compatible, type_name

        graph = self.graph
        src = graph.nodes[src_id]
        where = f"cannot link {self._end(src_id, sfield)} -> {self._end(node.id, dfield)}"
        outputs = src.output_class.output_fields()
        if sfield not in outputs:
            raise CliError(f"{where}: '{src.invocation_type}' has no output '{sfield}' (outputs: {', '.join(outputs)})")
        inputs = type(node).input_fields()
        if dfield not in inputs:
            raise CliError(
                f"{where}: '{node.invocation_type}' has no input '{dfield}' (inputs: {', '.join(inputs) or 'none'})"
            )
        if field_extra(inputs[dfield]).get("input") == Input.Direct.value:
            raise CliError(f"{where}: input '{dfield}' takes only a value, not a link")
        src_t = graph.output_type(src_id, sfield)
        dst_t = graph.input_type(node.id, dfield)
        if not are_types_compatible(src_t, dst_t):
            raise CliError(f"{where}: incompatible types ({type_name(src_t)} cannot feed {type_name(dst_t)})")
        return Edge.between(src_id, sfield, node.id, dfield)

    def _no_link_note(self, previous: str, node: BaseInvocation, explicit: dict[str, Any]) -> str | None:
        """Why a `|` linked nothing (None when the user set the same-named inputs themselves)."""
        from invokeai_core.typecompat import type_name

        src = self.graph.nodes[previous]
        outputs = src.output_class.output_fields()
        inputs = type(node).input_fields()
        if any(n in explicit for n in outputs if n in inputs):
            return None
        same = [n for n in outputs if n in inputs]
        head = f"note: nothing links '{src.invocation_type}' (node {previous})"
        head += f" to '{node.invocation_type}' (node {node.id})"
        if same:
            n = same[0]
            return (
                f"{head}: output '{n}' ({type_name(self.graph.output_type(previous, n))}) does not fit input '{n}' "
                f"({type_name(inputs[n].annotation)})"
            )
        return (
            f"{head}: no input is named like an output ({', '.join(outputs) or 'none'}); use --link -1 FIELD DEST_FIELD"
        )

"""Typed errors. Every error that reaches a user names what was wrong and where.

They derive from `InvokeAIError` (not `ValueError`) on purpose: pydantic re-wraps `ValueError`
raised inside validators, and these must reach the caller intact with their node id and field.
"""

from __future__ import annotations


class InvokeAIError(Exception):
    """Base class of every error the kernel raises on purpose."""


class InvocationDefinitionError(InvokeAIError, TypeError):
    """A node or output class is ill-defined (raised at class definition time)."""

    def __init__(self, class_name: str, reason: str) -> None:
        self.class_name = class_name
        self.reason = reason
        super().__init__(f"{class_name}: {reason}")


class RegistryError(InvokeAIError):
    """A registration conflict or a lookup of something unknown."""


class DuplicateRegistrationError(RegistryError):
    """Two plugins registered the same node type, output type or implementation name."""

    def __init__(self, what: str, name: str, first_plugin: str, second_plugin: str) -> None:
        self.what = what
        self.name = name
        self.first_plugin = first_plugin
        self.second_plugin = second_plugin
        super().__init__(f"{what} '{name}' is registered by both plugin '{first_plugin}' and plugin '{second_plugin}'")


class GraphError(InvokeAIError):
    """A graph, edge or node was refused. Carries the node id, the field and the rule broken."""

    def __init__(self, reason: str, node_id: str | None = None, field: str | None = None) -> None:
        self.node_id = node_id
        self.field = field
        self.reason = reason
        super().__init__(self._format())

    def _format(self) -> str:
        where = ""
        if self.node_id is not None:
            where = f"node '{self.node_id}'"
            if self.field is not None:
                where += f", field '{self.field}'"
            where += ": "
        return f"{where}{self.reason}"

    def to_dict(self) -> dict[str, str | None]:
        """A structured form for APIs and `--json` output."""
        return {"type": type(self).__name__, "node_id": self.node_id, "field": self.field, "reason": self.reason}


class UnknownNodeTypeError(GraphError):
    """A node's `type` is not registered by any loaded plugin."""


class MissingPluginError(UnknownNodeTypeError):
    """A graph file needs a node type that no loaded plugin provides; names the distribution that
    provided it when the file was saved (`distribution`, `distribution_version`), when it says."""

    def __init__(
        self,
        reason: str,
        node_id: str | None = None,
        *,
        node_type: str,
        plugin: str | None = None,
        distribution: str | None = None,
        distribution_version: str | None = None,
    ) -> None:
        self.node_type = node_type
        self.plugin = plugin
        self.distribution = distribution
        self.distribution_version = distribution_version
        super().__init__(reason, node_id, "type")

    def to_dict(self) -> dict[str, str | None]:
        return {
            **super().to_dict(),
            "node_type": self.node_type,
            "plugin": self.plugin,
            "distribution": self.distribution,
            "distribution_version": self.distribution_version,
        }


class NodeFieldError(GraphError):
    """A node has an unknown field or a value of the wrong type."""


class DuplicateNodeError(GraphError):
    """A node id is used twice."""


class NodeNotFoundError(GraphError):
    """An edge or a lookup names a node id that is not in the graph."""


class EdgeError(GraphError):
    """An edge is refused (unknown field, input fed twice, direct-only input, ...)."""


class TypeMismatchError(EdgeError):
    """An edge connects an output to an input of an incompatible type."""


class CycleError(EdgeError):
    """An edge would close a cycle; graphs are DAGs."""


class IterateCollectError(GraphError):
    """Broken iterate/collect wiring."""


class MissingInputError(GraphError):
    """A required input is neither set nor connected."""


class SessionError(InvokeAIError):
    """An operation on a session was refused (e.g. an edge into a node that already ran)."""

    def __init__(self, reason: str, node_id: str | None = None, field: str | None = None) -> None:
        self.node_id = node_id
        self.field = field
        self.reason = reason
        where = f"node '{node_id}': " if node_id else ""
        super().__init__(f"{where}{reason}")


class BatchError(InvokeAIError):
    """A batch was refused; names the group, node and field."""

    def __init__(self, reason: str, node_id: str | None = None, field: str | None = None) -> None:
        self.node_id = node_id
        self.field = field
        self.reason = reason
        where = ""
        if node_id is not None:
            where = f"node '{node_id}'" + (f", field '{field}'" if field else "") + ": "
        super().__init__(f"batch: {where}{reason}")


class ConfigError(InvokeAIError):
    """Bad configuration (unknown key, bad value, unknown or uninstallable implementation)."""


class ServiceUnavailableError(ConfigError):
    """A configured service implementation is unknown or cannot be imported."""


class StorageError(InvokeAIError):
    """A backing store (a database, an object store, a file system) failed: not the caller's fault.

    Storage implementations raise it (or a subclass) with a message naming the store and what to do.
    The web API answers 502; `StorageUnavailableError` (the store is unreachable or busy, so trying
    again later may work) 503.
    """


class StorageUnavailableError(StorageError):
    """The backing store cannot be reached or is busy right now."""


class PluginError(InvokeAIError):
    """A plugin failed to load (only raised in strict mode; otherwise it is reported)."""


class SessionNotFoundError(InvokeAIError):
    """No session with that id."""


class OutputTooLargeError(InvokeAIError):
    """A node produced an output larger than `limits.output_mb` (it fails that node; nothing is stored)."""


class InvalidTextError(InvokeAIError):
    """Text that cannot be encoded as UTF-8: a lone UTF-16 surrogate (`"\\ud800"` in JSON, or the
    `surrogateescape` form of bytes that were not UTF-8). Refused where text enters (the API, the CLI)
    and by the stores, so nothing is accepted that cannot be stored, served and read back.

    `loc` is where it was found: keys and list indexes from the top of the value that was checked."""

    def __init__(self, loc: tuple[str | int, ...], reason: str) -> None:
        self.loc = loc
        self.reason = reason
        where = ".".join(str(p) for p in loc)
        super().__init__(f"{where}: {reason}" if where else reason)


def find_invalid_text(value: object, loc: tuple[str | int, ...] = ()) -> tuple[tuple[str | int, ...], str] | None:
    """Where `value` (JSON-like: str, dict, list, tuple, scalars) holds text that is not valid UTF-8,
    and why; None when all of it is. Dict keys are checked as well as values."""
    stack: list[tuple[tuple[str | int, ...], object]] = [(loc, value)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError as e:
                    bad = item[e.start]
                    where = tuple(printable(p) if isinstance(p, str) else p for p in at)
                    return where, f"{bad!r} (a lone surrogate, at character {e.start}) cannot be encoded as UTF-8"
        elif isinstance(item, dict):
            for k, v in reversed(item.items()):
                key = k if isinstance(k, str) else str(k)
                stack.append(((*at, key), v))
                stack.append(((*at, key), k))
        elif isinstance(item, list | tuple):
            stack.extend(((*at, i), v) for i, v in reversed(list(enumerate(item))))
    return None


def printable(text: str) -> str:
    """`text` with unencodable characters as backslash escapes (safe in messages and JSON)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_text(value: object, loc: tuple[str | int, ...] = ()) -> None:
    """Raise `InvalidTextError` naming where `value` holds text that cannot be encoded as UTF-8."""
    found = find_invalid_text(value, loc)
    if found is not None:
        raise InvalidTextError(*found)

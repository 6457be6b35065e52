"""Saved workflows: a graph plus the inputs it exposes, stored in versions, run by id with values.

A **workflow** is a graph with a list of **exposed inputs**: each names one node's input field
(`node_id` + `field`) under a public `name` (and an optional description). Running a workflow
means setting those inputs (`{"steps": 30, "prompt": "a cat"}`) and running or enqueuing the graph;
everything else in the graph stays as saved. The library (`WorkflowStorageBase`, kind
`workflows`) keeps every save of the same workflow id as a new version; a run uses the latest
version unless told otherwise.

Checks (all before anything is stored or enqueued, each error naming what was wrong):

* on save: the graph is valid (unknown types, fields, edges, cycles) and every exposed input names a
  real node and one of its input fields that no edge feeds; names are unique, and no two inputs
  set the same field (`WorkflowInputError` naming the exposed input, its node and field).
* on run: every given name is an exposed input, and its value has the field's type and constraints
  (`WorkflowInputError` naming the input; 422 on the API, exit 2 on the CLI).
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from invokeai_core.errors import BatchError, GraphError, InvokeAIError

if TYPE_CHECKING:
    from invokeai_core.batch import Batch
    from invokeai_core.graph import Graph
    from invokeai_core.registry import NodeRegistry

#: Workflow ids: 1-128 letters, digits, `_`, `-`, `.`, starting with a letter or digit.
WORKFLOW_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
#: Exposed input names: 1-64 letters, digits, `_`, `-`, `.`, starting with a letter or `_`.
INPUT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class WorkflowError(InvokeAIError):
    """A workflow was refused (malformed, or a bad id)."""


class WorkflowNotFoundError(WorkflowError, KeyError):
    """No workflow (or no such version of it) in the library. Also a `KeyError`."""

    def __init__(self, workflow_id: str, version: int | None = None) -> None:
        self.workflow_id = workflow_id
        self.version = version
        what = f"version {version} of workflow '{workflow_id}'" if version is not None else f"workflow '{workflow_id}'"
        super().__init__(f"{what} does not exist")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class WorkflowInputError(BatchError, WorkflowError):
    """An exposed input is wrong: on save (names no real node or field) or on run (unknown name, a
    value of the wrong type). Carries the input's `input_name`, and its node id and field when known."""

    def __init__(self, input_name: str, reason: str, node_id: str | None = None, field: str | None = None) -> None:
        self.input_name = input_name
        super().__init__(reason, node_id, field)
        where = f" (node '{node_id}', field '{field}')" if node_id is not None and field is not None else ""
        self.args = (f"workflow input '{input_name}'{where}: {reason}",)


class ExposedInput(BaseModel):
    """One input a workflow lets its runner set."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=INPUT_NAME_RE.pattern, description="The public name runs use (`--set name=value`)")
    node_id: str = Field(min_length=1, max_length=256, description="The node of the graph whose input it sets")
    field: str = Field(min_length=1, max_length=256, description="The node's input field")
    description: str | None = Field(default=None, max_length=2000, description="What the input does")


class WorkflowIn(BaseModel):
    """A workflow as saved: the graph and the inputs it exposes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="A human name (also accepted where an id is)")
    description: str = Field(default="", max_length=10_000)
    graph: dict[str, Any] = Field(description="The graph JSON")
    inputs: list[ExposedInput] = Field(default_factory=list, max_length=1000, description="The exposed inputs")


class Workflow(WorkflowIn):
    """One stored version of a workflow."""

    id: str = Field(pattern=WORKFLOW_ID_RE.pattern, description="The workflow id (the same across versions)")
    version: int = Field(ge=1, description="1 for the first save, +1 for each later save of the same id")
    created_at: str = Field(description="When this version was saved")


class WorkflowSummary(BaseModel):
    """A workflow in the library listing: its latest version."""

    id: str
    name: str
    description: str
    version: int = Field(description="The latest version")
    versions: int = Field(description="How many versions are stored")
    inputs: list[ExposedInput]
    created_at: str = Field(description="When the first stored version was saved")
    updated_at: str = Field(description="When the latest version was saved")


class WorkflowVersion(BaseModel):
    version: int
    name: str
    created_at: str


def check_workflow_id(workflow_id: Any) -> str:
    if not isinstance(workflow_id, str) or not WORKFLOW_ID_RE.match(workflow_id):
        raise WorkflowError(
            f"invalid workflow id {workflow_id!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return workflow_id


def _graph(workflow: WorkflowIn, registry: NodeRegistry) -> Graph:
    from invokeai_core.graph import Graph

    try:
        graph = Graph.from_dict(workflow.graph, registry)
        graph.validate(require_inputs=False)
    except GraphError as e:
        raise BatchError(f"the workflow's graph is invalid: {e.reason}", e.node_id, e.field) from None
    return graph


def validate_workflow(workflow: WorkflowIn, registry: NodeRegistry) -> None:
    """The checks of a save (see the module docstring); raises `WorkflowInputError` or `BatchError`."""
    graph = _graph(workflow, registry)
    names: set[str] = set()
    targets: dict[tuple[str, str], str] = {}
    for exposed in workflow.inputs:
        name, node_id, field = exposed.name, exposed.node_id, exposed.field
        if name in names:
            raise WorkflowInputError(name, "this name is exposed twice", node_id, field)
        names.add(name)
        node = graph.nodes.get(node_id)
        if node is None:
            known = ", ".join(sorted(graph.nodes)[:20]) or "none"
            raise WorkflowInputError(name, f"no node '{node_id}' in the graph (nodes: {known})", node_id, field)
        fields = type(node).input_fields()
        if field not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise WorkflowInputError(
                name, f"'{node.invocation_type}' has no input named '{field}' (inputs: {known})", node_id, field
            )
        if graph.incoming_to(node_id, field):
            raise WorkflowInputError(name, "this field is fed by an edge; it cannot be exposed", node_id, field)
        other = targets.get((node_id, field))
        if other is not None:
            raise WorkflowInputError(name, f"the input '{other}' already exposes this field", node_id, field)
        targets[(node_id, field)] = name


def convert_inputs(
    workflow: WorkflowIn, values: dict[str, Any], registry: NodeRegistry, *, text: bool = False
) -> dict[str, Any]:
    """Each given value checked against its field (type and constraints), by input name. An unknown
    name or a bad value raises `WorkflowInputError` naming the input. With `text` (command-line
    values) a string that does not fit its field as is is read as JSON (`[1, 2]`, `{"k": 1}`)."""
    if not isinstance(values, dict):
        raise WorkflowError(f"inputs must be an object of input names to values, not {type(values).__name__}")
    exposed = {i.name: i for i in workflow.inputs}
    graph = _graph(workflow, registry)
    out: dict[str, Any] = {}
    for name, value in values.items():
        spec = exposed.get(name)
        if spec is None:
            known = ", ".join(sorted(exposed)) or "none"
            raise WorkflowInputError(name, f"the workflow exposes no such input (inputs: {known})")
        node = graph.nodes[spec.node_id]
        info = type(node).input_fields()[spec.field]
        annotation: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
        adapter: TypeAdapter[Any] = TypeAdapter(annotation)
        try:
            out[name] = adapter.validate_python(value)
        except ValidationError as e:
            decoded = _json_or_none(value) if text and isinstance(value, str) else None
            if decoded is not None:
                try:
                    out[name] = adapter.validate_python(decoded[0])
                    continue
                except ValidationError:
                    pass
            msg = e.errors()[0].get("msg", "invalid value")
            raise WorkflowInputError(name, f"{value!r} is invalid: {msg}", spec.node_id, spec.field) from None
    return out


def _json_or_none(text: str) -> tuple[Any] | None:
    import json

    try:
        return (json.loads(text),)
    except ValueError:
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, enum.Enum):
        return value.value
    return value


def workflow_graph(
    workflow: WorkflowIn, values: dict[str, Any], registry: NodeRegistry, *, text: bool = False
) -> Graph:
    """The workflow's graph with these input values set (checked by `convert_inputs`)."""
    converted = convert_inputs(workflow, values, registry, text=text)
    exposed = {i.name: i for i in workflow.inputs}
    updates: dict[str, dict[str, Any]] = {}
    for name, value in converted.items():
        spec = exposed[name]
        updates.setdefault(spec.node_id, {})[spec.field] = value
    return _graph(workflow, registry).with_values(updates)


def workflow_batch(
    workflow: WorkflowIn,
    values: dict[str, Any],
    registry: NodeRegistry,
    *,
    runs: int = 1,
    priority: int = 0,
    text: bool = False,
) -> Batch:
    """A batch that enqueues the workflow `runs` times with these input values (each value one datum,
    so a queue item's `field_values` show what the run set)."""
    from invokeai_core.batch import Batch, BatchDatum

    converted = convert_inputs(workflow, values, registry, text=text)
    exposed = {i.name: i for i in workflow.inputs}
    group = [
        BatchDatum(node_path=exposed[n].node_id, field_name=exposed[n].field, items=[_jsonable(v)])
        for n, v in converted.items()
    ]
    return Batch(graph=workflow.graph, data=[group] if group else [], runs=runs, priority=priority)

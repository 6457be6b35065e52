"""The workflow library: save (each save of an id is a new version), list, get, versions, delete, and
enqueue a saved workflow with values for its exposed inputs.

A workflow is a graph plus the inputs it exposes (`node_id` + `field` under a public `name`);
see docs/workflows.md. Bad exposed inputs (on save) and bad input values (on enqueue) are 422,
located at `["body", "inputs", NAME]` with `input` naming the exposed input; an unknown workflow
or version is 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from invokeai_core import (
    DEFAULT_QUEUE_ID,
    QUEUE_ID_RE,
    WORKFLOW_ID_RE,
    EnqueueResult,
    ExposedInput,
    Page,
    Workflow,
    WorkflowSummary,
    WorkflowVersion,
    workflow_batch,
)
from invokeai_web.dependencies import InvokerDep, SettingsDep, rendered
from invokeai_web.errors import CONFLICT, error_responses
from invokeai_web.openapi import GRAPH_REF, schema_ref
from invokeai_web.webhooks import WebhooksDep, WebhookUrl, check_webhook

router = APIRouter(
    prefix="/workflows",
    tags=["workflows"],
    responses=error_responses({404: "No such workflow (or version)", 409: CONFLICT}),
)

WorkflowId = Annotated[str, Path(pattern=WORKFLOW_ID_RE.pattern, description="The workflow id")]


class WorkflowBody(BaseModel):
    """A workflow to save: the graph and the inputs it exposes."""

    name: str = Field(min_length=1, max_length=200, description="A human name")
    description: str = Field(default="", max_length=10_000)
    graph: Annotated[dict[str, Any], schema_ref(GRAPH_REF)] = Field(description="The graph JSON")
    inputs: list[ExposedInput] = Field(default_factory=list, max_length=1000, description="The exposed inputs")


class WorkflowOut(WorkflowBody):
    id: str
    version: int
    created_at: str


class EnqueueWorkflowBody(BaseModel):
    inputs: dict[str, Any] = Field(default_factory=dict, description="Values by exposed input name")
    runs: int = Field(default=1, ge=1, le=10_000, description="How many queue items to enqueue")
    version: int | None = Field(default=None, ge=1, description="This version (default: the latest)")
    queue_id: str = Field(default=DEFAULT_QUEUE_ID, pattern=QUEUE_ID_RE.pattern, description="The queue")
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1, description="Queue priority (higher runs first)")
    prepend: bool = Field(default=False, description="Run these before every pending item of the queue")
    webhook: WebhookUrl | None = Field(
        default=None, description="POST a signed notice here when each item finishes (see docs/webhooks.md)"
    )


@router.get("", response_model=Page[WorkflowSummary], summary="List workflows")
def list_workflows(
    invoker: InvokerDep,
    query: Annotated[str | None, Query(max_length=200, description="Part of an id or name")] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Any:
    """The latest version of each workflow, most recently saved first."""
    return invoker.services.workflows.list(offset=offset, limit=limit, query=query)


@router.post("/{workflow_id}/versions", status_code=201, response_model=WorkflowOut, summary="Save a workflow")
def save_workflow(invoker: InvokerDep, workflow_id: WorkflowId, body: WorkflowBody) -> Response:
    """Save the workflow as the next version of `workflow_id` (version 1 for a new id). Each exposed
    input must name a real node of the graph and one of its input fields that no edge feeds."""
    saved = invoker.services.workflows.save(workflow_id, body.model_dump())
    return rendered(saved.model_dump(mode="json"), status_code=201)


@router.get("/{workflow_id}", response_model=WorkflowOut, summary="Get a workflow")
def get_workflow(
    invoker: InvokerDep,
    workflow_id: WorkflowId,
    version: Annotated[int | None, Query(ge=1, description="This version (default: the latest)")] = None,
) -> Response:
    workflow: Workflow = invoker.services.workflows.get(workflow_id, version)
    return rendered(workflow.model_dump(mode="json"))


@router.get("/{workflow_id}/versions", response_model=list[WorkflowVersion], summary="List a workflow's versions")
def list_versions(invoker: InvokerDep, workflow_id: WorkflowId) -> Any:
    """Every stored version, oldest first."""
    return invoker.services.workflows.versions(workflow_id)


class DeletedVersions(BaseModel):
    deleted: int = Field(description="How many versions were deleted")


@router.delete("/{workflow_id}", response_model=DeletedVersions, summary="Delete a workflow")
def delete_workflow(invoker: InvokerDep, workflow_id: WorkflowId) -> Any:
    """Delete the workflow and every version of it."""
    return {"deleted": invoker.services.workflows.delete(workflow_id)}


@router.post("/{workflow_id}/enqueue", status_code=201, response_model=EnqueueResult, summary="Run a workflow")
def enqueue_workflow(
    invoker: InvokerDep,
    settings: SettingsDep,
    webhooks: WebhooksDep,
    workflow_id: WorkflowId,
    body: EnqueueWorkflowBody,
) -> Any:
    """Enqueue `runs` queue items of the workflow with these input values, all or nothing. An unknown
    input name or a value of the wrong type is 422 naming the input (`detail[0].input`). With
    `webhook`, each item's completion, failure or cancel is POSTed there, signed."""
    url = check_webhook(settings, body.webhook) if body.webhook is not None else None
    workflow = invoker.services.workflows.get(workflow_id, body.version)
    batch = workflow_batch(workflow, body.inputs, invoker.registry, runs=body.runs, priority=body.priority)
    if url is not None:
        webhooks.register(body.queue_id, batch.batch_id, url)
    try:
        return invoker.enqueue_batch(body.queue_id, batch, prepend=body.prepend)
    except BaseException:
        if url is not None:
            webhooks.unregister(batch.batch_id)
        raise

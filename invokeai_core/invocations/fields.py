"""Field helpers for node inputs and outputs.

`InputField` and `OutputField` are thin wrappers over `pydantic.Field` that record the metadata the
CLI, the API and the UI are generated from (`description`, `title`, `ui_*` hints, and how an input
may be fed: a direct value, a connection, or either). Large values never travel inside a graph:
`ImageField` is a small reference resolved through the image service.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import PydanticUndefined


class Input(StrEnum):
    """How an input field may receive its value."""

    Direct = "direct"
    """Only a value set on the node (never an edge)."""
    Connection = "connection"
    """Only an edge from another node's output."""
    Any = "any"
    """Either a value or an edge."""


def _clean(extra: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in extra.items() if v is not None and v is not False}


def InputField(
    default: Any = PydanticUndefined,
    *,
    default_factory: Any = None,
    description: str | None = None,
    title: str | None = None,
    input: Input = Input.Any,
    ui_type: str | None = None,
    ui_hidden: bool = False,
    ui_order: int | None = None,
    ui_component: str | None = None,
    ui_choice_labels: dict[str, str] | None = None,
    ui_model_type: str | list[str] | None = None,
    ui_model_base: str | list[str] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    multiple_of: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
) -> Any:
    """Declare a node input.

    An input declared without a default is *required*: the graph must either set it or connect an
    edge into it. It is stored with a `None` placeholder so a node can be created before its edges
    exist; the graph validator (and the executor, as a last line) reports a missing required input
    with the node id and field name.

    `ui_model_type` / `ui_model_base` narrow a model picker (`ui_type="model"`) to the installed
    models whose record `type` (`"main"`, `"lora"`, `"controlnet"`, ...) and `base` (`"sd-1"`, ...)
    fit; a list accepts any of them. They are hints for UIs only: the node still checks what it loads.
    """
    required = default is PydanticUndefined and default_factory is None
    extra = _clean(
        {
            "field_kind": "input",
            "input": Input(input).value,
            "orig_required": required,
            "ui_type": ui_type,
            "ui_hidden": ui_hidden,
            "ui_order": ui_order,
            "ui_component": ui_component,
            "ui_choice_labels": ui_choice_labels,
            "ui_model_type": ui_model_type,
            "ui_model_base": ui_model_base,
        }
    )
    extra["input"] = Input(input).value
    extra["orig_required"] = required
    kwargs: dict[str, Any] = {
        "description": description,
        "title": title,
        "json_schema_extra": extra,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "multiple_of": multiple_of,
        "min_length": min_length,
        "max_length": max_length,
        "pattern": pattern,
    }
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if default_factory is not None:
        return Field(default_factory=default_factory, **kwargs)
    return Field(default=None if required else default, **kwargs)


def OutputField(
    *,
    description: str | None = None,
    title: str | None = None,
    ui_type: str | None = None,
    ui_hidden: bool = False,
    ui_order: int | None = None,
) -> Any:
    """Declare a node output. Outputs are always required on the output object."""
    extra = _clean({"field_kind": "output", "ui_type": ui_type, "ui_hidden": ui_hidden, "ui_order": ui_order})
    kwargs: dict[str, Any] = {"description": description, "title": title, "json_schema_extra": extra}
    return Field(**{k: v for k, v in kwargs.items() if v is not None})


class ImageField(BaseModel):
    """A reference to an image held by the image service (never the pixels themselves)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_name: str = Field(description="The name of the image in the image service")


def field_extra(field_info: Any) -> dict[str, Any]:
    """Return the invokeai metadata recorded on a pydantic `FieldInfo` (empty if none)."""
    extra = getattr(field_info, "json_schema_extra", None)
    return extra if isinstance(extra, dict) else {}

"""Base classes and decorators for invocations (nodes) and their outputs.

A node is a pydantic v2 model with an `invoke(context)` method. The `@invocation` decorator gives it
its type id and metadata and validates the class at definition time, so a broken node fails when
its module is imported, with an error naming the class, rather than in the middle of a session.
"""

from __future__ import annotations

import inspect
import re
import sys
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticUndefined

from invokeai_core.errors import InvocationDefinitionError
from invokeai_core.invocations.fields import field_extra

if TYPE_CHECKING:
    from invokeai_core.context import InvocationContext
    from invokeai_core.services.container import Services

SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
TYPE_ID = re.compile(r"^[a-z][a-z0-9_]*$")

#: Field names a node may not declare: they belong to the framework.
RESERVED_INPUT_NAMES = frozenset({"id", "type", "use_cache", "is_intermediate", "workflow", "metadata"})
#: Field names an output may not declare.
RESERVED_OUTPUT_NAMES = frozenset({"type"})


@dataclass(frozen=True)
class InvocationMeta:
    """Metadata given to `@invocation`, kept on the class as `invocation_meta`."""

    type: str
    title: str
    tags: tuple[str, ...] = ()
    category: str = "misc"
    version: str = "1.0.0"
    cacheable: bool = True
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _schema_extra_invocation(schema: dict[str, Any], cls: type) -> None:
    """Add the type discriminator, node metadata and true required-ness to a node's JSON schema."""
    meta: InvocationMeta | None = cls.__dict__.get("invocation_meta")
    props: dict[str, Any] = schema.setdefault("properties", {})
    required: list[str] = schema.setdefault("required", [])
    for name, info in getattr(cls, "model_fields", {}).items():
        extra = field_extra(info)
        if extra.get("orig_required"):
            if name not in required:
                required.append(name)
            props.get(name, {}).pop("default", None)
    if meta is None:
        return
    schema["properties"] = {"type": {"const": meta.type, "default": meta.type, "title": "Type"}, **props}
    schema["required"] = ["type", *[r for r in required if r != "type"]]
    schema["title"] = meta.title
    schema["description"] = meta.description
    schema["node_kind"] = "invocation"
    schema["tags"] = list(meta.tags)
    schema["category"] = meta.category
    schema["version"] = meta.version
    schema["cacheable"] = meta.cacheable
    output_cls = cls.__dict__.get("output_class")
    if output_cls is not None:
        schema["output_type"] = output_cls.output_type


def _schema_extra_output(schema: dict[str, Any], cls: type) -> None:
    type_id = cls.__dict__.get("output_type")
    if type_id is None:
        return
    props = schema.setdefault("properties", {})
    schema["properties"] = {"type": {"const": type_id, "default": type_id, "title": "Type"}, **props}
    schema["required"] = ["type", *[r for r in schema.get("required", []) if r != "type"]]
    schema["node_kind"] = "output"


class BaseInvocationOutput(BaseModel):
    """Base class of every node output. Decorate subclasses with `@invocation_output("name")`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_schema_extra_output)

    output_type: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _strip_type(cls, data: Any) -> Any:
        if isinstance(data, dict) and "type" in data:
            expected = cls.__dict__.get("output_type")
            if expected is not None and data["type"] != expected:
                raise ValueError(f"type is '{data['type']}', expected '{expected}'")
            data = {k: v for k, v in data.items() if k != "type"}
        return data

    @model_serializer(mode="wrap")
    def _add_type(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        data = handler(self)
        return {"type": type(self).output_type, **data}

    @classmethod
    def output_fields(cls) -> dict[str, Any]:
        """The output's fields (pydantic `FieldInfo` by name), cached per class; read-only."""
        cached = cls.__dict__.get("_output_fields_cache")
        if cached is None:
            cached = dict(cls.__pydantic_fields__)
            type.__setattr__(cls, "_output_fields_cache", cached)
        return cached


class BaseInvocation(BaseModel):
    """Base class of every node. Decorate subclasses with `@invocation("type_id", ...)`.

    `id` is the node's id inside a graph; `use_cache=False` opts one node out of the output cache.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_schema_extra_invocation)

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, description="The id of this node in its graph")
    use_cache: bool = Field(default=True, description="Whether to use the output cache for this node")

    invocation_type: ClassVar[str]
    invocation_meta: ClassVar[InvocationMeta]
    output_class: ClassVar[type[BaseInvocationOutput]]
    #: Inputs declared without a default (set by `@invocation`).
    required_input_names: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _strip_type(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "type" in data:
            expected = cls.__dict__.get("invocation_type")
            if expected is not None and data["type"] != expected:
                raise ValueError(f"type is '{data['type']}', expected '{expected}'")
            data = {k: v for k, v in data.items() if k != "type"}
        required = cls.required_input_names
        if required and any(data.get(k, 0) is None for k in required):
            # `null` for a required input is its "not set yet" placeholder (it is fed by an edge):
            # what a node serialises before its edges are resolved must parse back.
            data = {k: v for k, v in data.items() if not (v is None and k in required)}
        return data

    @model_serializer(mode="wrap")
    def _add_type(self, handler: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
        data = handler(self)
        type_id = type(self).__dict__.get("invocation_type") or getattr(type(self), "invocation_type", None)
        if "id" not in data:  # excluded by the caller (e.g. the output cache key): keep it out
            return {"type": type_id, **data}
        node_id = data.pop("id")
        return {"id": node_id, "type": type_id, **data}

    def invoke(self, context: InvocationContext) -> BaseInvocationOutput:
        """Run the node. Subclasses implement this and annotate the return with their output class."""
        raise NotImplementedError

    def preflight(self, services: Services) -> None:
        """Optional: check this node's input values against the services (e.g. that a model name is
        installed) before anything runs. The Invoker calls it when a graph or node is added to a session
        and for each item of a batch at enqueue; raise `NodeFieldError(reason, self.id, field)` to refuse
        the graph (exit status 2 in the CLI, 422 in the API). A complaint about an input that was not
        given a value, or that an edge feeds, is ignored: that value is known only when the node runs."""

    @classmethod
    def input_fields(cls) -> dict[str, Any]:
        """The node's own input fields (pydantic `FieldInfo` by name), without `id` and `use_cache`.

        Cached per class: graphs ask for it once per edge, and pydantic's `model_fields` accessor is
        slow enough to dominate building a 10,000-node graph. Treat the result as read-only.
        """
        cached = cls.__dict__.get("_input_fields_cache")
        if cached is None:
            fields = cls.__pydantic_fields__
            cached = {k: v for k, v in fields.items() if k not in ("id", "use_cache")}
            type.__setattr__(cls, "_input_fields_cache", cached)
        return cached

    @classmethod
    def required_inputs(cls) -> list[str]:
        """Names of inputs that must be set or connected."""
        return [k for k, v in cls.input_fields().items() if field_extra(v).get("orig_required")]


TInvocation = TypeVar("TInvocation", bound=type[BaseInvocation])
TOutput = TypeVar("TOutput", bound=type[BaseInvocationOutput])


def _caller_namespace(depth: int) -> dict[str, Any]:
    """The local names where a decorated class is defined (a class defined inside a function, with
    `from __future__ import annotations`, names its output class only through that frame)."""
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - a shallower stack than expected
        return {}
    if frame.f_locals is frame.f_globals:
        return {}
    return dict(frame.f_locals)


def _resolve_return(cls: type, name: str, local_ns: dict[str, Any] | None = None) -> Any:
    """Resolve only invoke()'s return annotation: parameter annotations may be TYPE_CHECKING-only."""
    func = cls.invoke  # type: ignore[attr-defined]
    ann = getattr(func, "__annotations__", {}).get("return")
    if ann is None:
        raise InvocationDefinitionError(
            name, "invoke() has no return annotation; annotate it with the node's output class"
        )
    if isinstance(ann, str):
        try:
            ann = eval(ann, getattr(func, "__globals__", {}), {**(local_ns or {}), **vars(cls)})
        except Exception as e:
            raise InvocationDefinitionError(
                name, f"the return annotation of invoke() ({ann!r}) cannot be resolved: {e}"
            ) from None
    return ann


def _check_type_id(class_name: str, type_id: Any, what: str) -> None:
    if not isinstance(type_id, str) or not TYPE_ID.match(type_id):
        raise InvocationDefinitionError(
            class_name,
            f"{what} type id {type_id!r} is invalid: use lower-case letters, digits and '_', "
            "starting with a letter (e.g. 'add' or 'image_resize')",
        )


def _error_detail(e: Exception) -> str:
    """The human part of a pydantic error (not its trailing documentation link)."""
    if isinstance(e, ValidationError):
        errors = e.errors()
        if errors:
            return "; ".join(str(err.get("msg", "")) for err in errors)
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and "errors.pydantic.dev" not in ln]
    return lines[-1] if lines else type(e).__name__


def _check_defaults(cls: type[BaseModel], skip: frozenset[str]) -> None:
    """Validate every default (and default_factory result) against its field's type and constraints."""
    for name, info in cls.model_fields.items():
        if name in skip or field_extra(info).get("orig_required"):
            continue
        if info.default is not PydanticUndefined:
            default, what = info.default, f"default {info.default!r}"
        elif info.default_factory is not None:
            try:
                default = info.default_factory()  # type: ignore[call-arg]
            except Exception as e:
                raise InvocationDefinitionError(
                    cls.__name__, f"the default_factory of field '{name}' raised {type(e).__name__}: {e}"
                ) from None
            what = f"default {default!r} (from default_factory)"
        else:
            continue
        annotation: Any = info.annotation
        try:
            target: Any = typing.Annotated[annotation, *info.metadata] if info.metadata else annotation
            adapter: TypeAdapter[Any] = TypeAdapter(target)
            adapter.validate_python(default)
        except Exception as e:  # pydantic.ValidationError or a schema error
            raise InvocationDefinitionError(
                cls.__name__, f"{what} of field '{name}' is invalid: {_error_detail(e)}"
            ) from None


def _own_annotations(cls: type, stop: type) -> set[str]:
    """Field names declared by `cls` and its bases up to (not including) `stop`, mixins included."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is not stop and issubclass(klass, stop):
            names.update(inspect.get_annotations(klass))
    return names


def invocation(
    invocation_type: str,
    *,
    title: str | None = None,
    tags: list[str] | None = None,
    category: str | None = None,
    version: str = "1.0.0",
    use_cache: bool = True,
) -> Callable[[TInvocation], TInvocation]:
    """Give a node class its type id and metadata, and validate it.

    Args:
        invocation_type: the node's identity everywhere (graph JSON, CLI command, API schema name).
        title: a human title (defaults to the type id in title case).
        tags: search tags for UIs.
        category: a palette group.
        version: the node's semver version; bump it when its behaviour changes (it keys the cache).
        use_cache: False for nodes whose output must never be cached (random nodes).
    """

    def wrapper(cls: TInvocation) -> TInvocation:
        name = getattr(cls, "__name__", repr(cls))
        if not (isinstance(cls, type) and issubclass(cls, BaseInvocation)):
            raise InvocationDefinitionError(name, "@invocation must decorate a subclass of BaseInvocation")
        _check_type_id(name, invocation_type, "invocation")
        if not isinstance(version, str) or not SEMVER.match(version):
            raise InvocationDefinitionError(name, f"version {version!r} is not a semantic version such as '1.0.0'")
        if title is not None and not isinstance(title, str):
            raise InvocationDefinitionError(name, f"title must be a string, not {type(title).__name__}")
        if category is not None and not isinstance(category, str):
            raise InvocationDefinitionError(name, f"category must be a string, not {type(category).__name__}")
        if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
            raise InvocationDefinitionError(name, f"tags must be a list of strings, not {tags!r}")
        reserved = sorted(_own_annotations(cls, BaseInvocation) & RESERVED_INPUT_NAMES)
        if reserved:
            raise InvocationDefinitionError(
                name, f"field name(s) {', '.join(reserved)} are reserved by the framework; rename them"
            )
        fields: dict[str, Any] = dict(cls.__pydantic_fields__)
        clashes = sorted(n for n in fields if n not in ("id", "use_cache") and hasattr(BaseInvocation, n))
        if clashes:
            raise InvocationDefinitionError(name, f"field name(s) {', '.join(clashes)} shadow BaseInvocation")
        if cls.invoke is BaseInvocation.invoke:
            raise InvocationDefinitionError(name, "it does not implement invoke(self, context)")
        ret = _resolve_return(cls, name, _caller_namespace(1))
        if not (isinstance(ret, type) and issubclass(ret, BaseInvocationOutput)):
            raise InvocationDefinitionError(
                name,
                f"invoke() must be annotated to return a BaseInvocationOutput subclass, not {ret!r}",
            )
        if "output_type" not in ret.__dict__:
            raise InvocationDefinitionError(
                name, f"invoke() returns {ret.__name__}, which is not decorated with @invocation_output"
            )
        _check_defaults(cls, frozenset({"id", "use_cache"}))
        doc = inspect.cleandoc(cls.__doc__ or "")
        meta = InvocationMeta(
            type=invocation_type,
            title=title or invocation_type.replace("_", " ").title(),
            tags=tuple(tags or ()),
            category=category or "misc",
            version=version,
            cacheable=use_cache,
            description=doc,
        )
        cls.invocation_type = invocation_type
        cls.invocation_meta = meta
        cls.output_class = ret
        cls.required_input_names = frozenset(cls.required_inputs())
        cls.model_rebuild(force=True)
        if "_input_fields_cache" in cls.__dict__:
            type.__delattr__(cls, "_input_fields_cache")  # rebuilt fields: recompute on next use
        return cls

    return wrapper


def invocation_output(output_type: str) -> Callable[[TOutput], TOutput]:
    """Give an output class its type id and validate it."""

    def wrapper(cls: TOutput) -> TOutput:
        name = getattr(cls, "__name__", repr(cls))
        if not (isinstance(cls, type) and issubclass(cls, BaseInvocationOutput)):
            raise InvocationDefinitionError(name, "@invocation_output must decorate a subclass of BaseInvocationOutput")
        _check_type_id(name, output_type, "output")
        reserved = sorted(_own_annotations(cls, BaseInvocationOutput) & RESERVED_OUTPUT_NAMES)
        if reserved:
            raise InvocationDefinitionError(name, f"field name(s) {', '.join(reserved)} are reserved")
        _check_defaults(cls, frozenset())
        cls.output_type = output_type
        cls.model_rebuild(force=True)
        return cls

    return wrapper

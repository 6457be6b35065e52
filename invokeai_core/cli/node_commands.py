"""Click commands generated from a node class: one option per input field, typed from its annotation.

`add --a 2 --b 3` is parsed by the command built for the `add` node. Options come from the node's
input fields (name, type, default, description, choices); every command also has `--id ID` (name
the node) and `--link SOURCE FIELD DEST_FIELD` (an explicit edge). `--help` and `invokeai nodes
TYPE` print the same text, generated from the same metadata.

Type mapping: `int`, `float`, `str` -> typed options; `bool` -> `--x/--no-x`; `Literal[...]` and
`Enum` -> choices; `list[T]` -> a repeatable option; `ImageField` -> an image name or a file path
(uploaded to the image service when the line runs); anything else -> a JSON value. Every explicit
value is then validated with the field's pydantic type and constraints (`ge=`, `max_length=`...), so a
bad value is a usage error naming the option.

This module is imported only when a pipeline is parsed or a node's help is shown, never for
`invokeai --help`.
"""

from __future__ import annotations

import enum
import json
import typing
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

import click
from click.core import ParameterSource
from pydantic import BaseModel, TypeAdapter, ValidationError

from invokeai_core.invocations.fields import ImageField, Input, field_extra
from invokeai_core.typecompat import is_union, strip_annotated, type_name

if TYPE_CHECKING:
    from invokeai_core.invocations.baseinvocation import BaseInvocation
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.services.container import Services

#: Flags every node command owns; a field with one of these names gets `--in-NAME` instead.
RESERVED_FLAGS = frozenset({"link", "id", "help", "h"})
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# -- images ---------------------------------------------------------------------------------------
class ImageResolver:
    """Turns an image option's text into an `ImageField`: the name of a stored image, or a file
    path. Files are checked when parsed and uploaded only by `upload()`, after the whole line has
    been accepted, so bad input leaves nothing behind."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.pending: dict[str, Path] = {}  # image name to give -> file to upload
        self.orphans: set[str] = set()  # files in the store without a record (e.g. a previous run)

    def resolve(self, text: str) -> ImageField:
        path = Path(text).expanduser()
        if path.is_file():
            from PIL import Image, UnidentifiedImageError

            try:
                with Image.open(path) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError) as e:
                raise ValueError(f"'{text}' is not an image file Pillow can read ({e})") from None
            for name, p in self.pending.items():
                if p == path.resolve():
                    return ImageField(image_name=name)
            name = f"{uuid.uuid4().hex}.png"
            self.pending[name] = path.resolve()
            return ImageField(image_name=name)
        if "/" not in text and "\\" not in text:
            try:
                self.services.image_records.get(text)
                return ImageField(image_name=text)
            except KeyError:
                pass
            try:
                exists = self.services.images.exists(text)
            except KeyError:
                exists = False
            if exists:
                self.orphans.add(text)
                return ImageField(image_name=text)
        raise ValueError(f"'{text}' is neither an image file nor the name of a stored image")

    def upload(self) -> None:
        from PIL import Image

        from invokeai_core.services.base import ImageRecord

        svc = self.services.image_service
        for name, path in self.pending.items():
            with Image.open(path) as img:
                img.load()
                svc.create(img, image_name=name, is_intermediate=False, metadata={"source_file": str(path)})
        for name in self.orphans:
            # a file the store still has but whose record was lost (records kept in memory): give it
            # a record again so nodes can load it through the image service
            stored = self.services.images.get(name)
            svc.records.save(ImageRecord(image_name=name, width=stored.width, height=stored.height, mode=stored.mode))
        self.pending.clear()
        self.orphans.clear()


class ImageParamType(click.ParamType):
    name = "image"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "IMAGE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, ImageField):
            return value
        resolver = ctx.find_object(ImageResolver) if ctx is not None else None
        if resolver is None:
            return ImageField(image_name=str(value))
        try:
            return resolver.resolve(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class JsonParamType(click.ParamType):
    """A JSON value (falls back to the plain string); the field's pydantic type validates it."""

    name = "json"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "JSON"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value


class ChoiceOf(click.Choice):
    """Choices shown as text, converted back to the field's values (ints, enum members...)."""

    def __init__(self, values: list[Any]) -> None:
        self.values = {str(v.value if isinstance(v, enum.Enum) else v): v for v in values}
        super().__init__(list(self.values))

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str) and value in self.values.values():
            return value
        text = super().convert(value, param, ctx)
        return self.values[str(text)]


class FieldOption(click.Option):
    """An input's option, with dashes like every other option (`--cfg-scale`), which also answers to
    the field's own name (`--cfg_scale`); help shows the first only."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        opts, secondary = self.opts, self.secondary_opts
        self.opts, self.secondary_opts = opts[:1], secondary[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = opts, secondary


# -- type mapping ---------------------------------------------------------------------------------
@dataclass
class FieldSpec:
    """How one input field becomes an option."""

    name: str
    flags: list[str]
    param_type: Any = None
    multiple: bool = False
    is_bool: bool = False
    is_image: bool = False


def _unwrap_optional(tp: Any) -> Any:
    tp = strip_annotated(tp)
    if is_union(tp):
        members = [m for m in get_args(tp) if m is not type(None)]
        if len(members) == 1:
            return strip_annotated(members[0])
    return tp


def _is_image(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, ImageField)


def _scalar_type(tp: Any) -> tuple[Any, bool, bool]:
    """(click type, is_bool, is_image) for a non-list annotation."""
    tp = _unwrap_optional(tp)
    if tp is bool:
        return None, True, False
    if tp is int:
        return click.INT, False, False
    if tp is float:
        return click.FLOAT, False, False
    if tp is str:
        return click.STRING, False, False
    if get_origin(tp) is Literal:
        return ChoiceOf(list(get_args(tp))), False, False
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return ChoiceOf(list(tp)), False, False
    if _is_image(tp):
        return ImageParamType(), False, True
    return JsonParamType(), False, False  # models, dicts, unions...: JSON, validated by pydantic


def field_spec(name: str, annotation: Any) -> FieldSpec:
    flag = f"in-{name}" if name in RESERVED_FLAGS else name
    flags = ["--" + flag.replace("_", "-")]
    if "_" in flag:
        flags.append(f"--{flag}")
    tp = _unwrap_optional(annotation)
    origin = get_origin(tp)
    if origin in (list, typing.List, tuple, set, frozenset) or tp in (list, tuple, set):  # noqa: UP006
        args = [a for a in get_args(tp) if a is not Ellipsis]
        elem = args[0] if len(args) == 1 or (origin is tuple and len(set(map(str, args))) == 1) else None
        if elem is not None:
            elem_t, is_bool, is_image = _scalar_type(elem)
            if is_bool:
                elem_t = click.BOOL
            return FieldSpec(name, flags, elem_t, multiple=True, is_image=is_image)
        return FieldSpec(name, flags, JsonParamType())
    param_type, is_bool, is_image = _scalar_type(tp)
    return FieldSpec(name, flags, param_type, is_bool=is_bool, is_image=is_image)


def _default_text(info: Any) -> str | None:
    if field_extra(info).get("orig_required"):
        return None
    if info.default_factory is not None:
        value = info.default_factory()
    else:
        value = info.default
    if value is None or value == [] or value == ():
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, BaseModel):
        return json.dumps(value.model_dump(mode="json"))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if not isinstance(value, list | dict) else json.dumps(value, default=str)


# -- the command ----------------------------------------------------------------------------------
@dataclass
class ParsedSegment:
    """One pipeline segment, parsed: the values given explicitly, the links, the node id asked for."""

    type_id: str
    values: dict[str, Any] = field(default_factory=dict)
    links: list[tuple[str, str, str]] = field(default_factory=list)
    node_id: str | None = None
    help_shown: bool = False


class NodeCommand(click.Command):
    """The command for one node type."""

    def __init__(self, cls: type[BaseInvocation], plugin: str = "?") -> None:
        self.node_class = cls
        self.plugin = plugin
        self.specs: dict[str, FieldSpec] = {}
        self.connection_only: list[str] = []
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        params: list[click.Parameter] = []
        fields = cls.input_fields()
        ordered = sorted(fields.items(), key=lambda kv: field_extra(kv[1]).get("ui_order", 1_000_000))
        for name, info in ordered:
            extra = field_extra(info)
            if extra.get("input") == Input.Connection.value:
                self.connection_only.append(name)
                continue
            spec = field_spec(name, info.annotation)
            self.specs[name] = spec
            params.append(self._option(spec, info))
        params.append(
            click.Option(
                ["link", "--link"],
                nargs=3,
                multiple=True,
                metavar="SOURCE FIELD DEST_FIELD",
                help="Feed input DEST_FIELD from output FIELD of node SOURCE: a node id, or -1 for the "
                "previous node, -2 for the one before... Replaces an auto-link into that input. Repeatable.",
            )
        )
        params.append(
            click.Option(["node_id", "--id"], metavar="ID", help="This node's id (default: the next number).")
        )
        meta = cls.invocation_meta
        super().__init__(
            name=cls.invocation_type,
            params=params,
            help=meta.description or meta.title,
            short_help=meta.title,
            context_settings=dict(CONTEXT_SETTINGS),
            add_help_option=True,
        )

    @staticmethod
    def _option(spec: FieldSpec, info: Any) -> click.Option:
        extra = field_extra(info)
        required = bool(extra.get("orig_required"))
        help_text = info.description or ""
        if spec.is_image:
            help_text += " (an image name or a file path)"
        if spec.multiple:
            help_text += " (repeat the option for each element)"
        if required:
            help_text += "  [required unless linked]"
        default = _default_text(info)
        param_decl = f"f_{spec.name}"
        if spec.is_bool:
            return FieldOption(
                [param_decl, *(f"{on}/--no-{on[2:]}" for on in spec.flags)],
                default=None,
                help=help_text.strip() + (f"  [default: {default}]" if default is not None else ""),
                hidden=bool(extra.get("ui_hidden")),
            )
        return FieldOption(
            [param_decl, *spec.flags],
            type=spec.param_type,
            multiple=spec.multiple,
            default=None,
            help=help_text.strip() + (f"  [default: {default}]" if default is not None else ""),
            hidden=bool(extra.get("ui_hidden")),
        )

    # -- parsing ----------------------------------------------------------------------------------
    def adapter(self, name: str) -> TypeAdapter[Any]:
        ad = self._adapters.get(name)
        if ad is None:
            info = self.node_class.input_fields()[name]
            tp: Any = typing.Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            ad = self._adapters[name] = TypeAdapter(tp)
        return ad

    def param_for(self, name: str) -> click.Parameter:
        return next(p for p in self.params if p.name == f"f_{name}")

    def validate_value(self, name: str, value: Any, ctx: click.Context | None = None) -> Any:
        """Validate a converted option value with the field's pydantic type; a usage error if bad."""
        if self.specs[name].multiple and isinstance(value, tuple):
            value = list(value)
        try:
            return self.adapter(name).validate_python(value)
        except ValidationError as e:
            err = e.errors()[0]
            loc = "".join(f"[{x}]" for x in err.get("loc", ()))
            raise click.BadParameter(
                f"{err.get('msg', 'invalid value')}{' at ' + loc if loc else ''} (got {value!r})",
                ctx=ctx,
                param=self.param_for(name),
            ) from None

    def parse_segment(self, words: list[str], info_name: str, resolver: ImageResolver | None = None) -> ParsedSegment:
        """Parse one segment's words (after the command name). Raises click's usage errors; with
        `--help`, prints the help and returns a result with `help_shown`."""
        parsed = ParsedSegment(self.node_class.invocation_type)
        try:
            ctx = self.make_context(info_name, list(words), obj=resolver)
        except click.exceptions.Exit:
            parsed.help_shown = True
            return parsed
        for name in self.specs:
            pname = f"f_{name}"
            if ctx.get_parameter_source(pname) is not ParameterSource.COMMANDLINE:
                continue
            parsed.values[name] = self.validate_value(name, ctx.params[pname], ctx)
        parsed.links = [(str(a), str(b), str(c)) for a, b, c in ctx.params.get("link") or ()]
        parsed.node_id = ctx.params.get("node_id")
        return parsed

    def convert_text(self, name: str, text: str, resolver: ImageResolver | None = None) -> Any:
        """A shell default's text converted for this node's field (ValueError if it does not fit);
        image names and files go through `resolver` like option values do."""
        spec = self.specs[name]
        param = self.param_for(name)
        ctx = click.Context(self, obj=resolver) if resolver is not None else None
        try:
            if spec.is_bool:
                value: Any = click.BOOL.convert(text, param, ctx)
            else:
                conv = spec.param_type.convert(text, param, ctx)
                value = [conv] if spec.multiple else conv
            return self.validate_value(name, value)
        except click.BadParameter as e:
            raise ValueError(e.message or e.format_message()) from None

    def option_flags(self) -> dict[str, click.Option]:
        """Every flag of this command (`--a`, `--no-x`, `--link`...) with its option."""
        out: dict[str, click.Option] = {}
        for p in self.get_params(click.Context(self, help_option_names=["-h", "--help"])):
            if isinstance(p, click.Option):
                for f in (*p.opts, *p.secondary_opts):
                    out[f] = p
        return out

    # -- help -------------------------------------------------------------------------------------
    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        cls = self.node_class
        meta = cls.invocation_meta
        formatter.write(f"{meta.type}: {meta.title}\n")
        line = f"category {meta.category}, version {meta.version}, plugin {self.plugin}"
        if meta.tags:
            line += f", tags {', '.join(meta.tags)}"
        formatter.write(f"  {line}\n")
        if meta.description:
            with formatter.indentation():
                formatter.write_text(meta.description)
        formatter.write_paragraph()
        self.format_usage(ctx, formatter)
        inputs = [
            rec
            for p in self.params
            if p.name and p.name.startswith("f_")
            for rec in [p.get_help_record(ctx)]
            if rec is not None
        ]
        with formatter.section("Inputs"):
            if inputs:
                formatter.write_dl(inputs)
            else:
                formatter.write_text("(none)")
        if self.connection_only:
            fields = cls.input_fields()
            rows = [
                (n, f"{type_name(fields[n].annotation)}  {fields[n].description or ''}".rstrip())
                for n in self.connection_only
            ]
            with formatter.section("Inputs fed only by --link or auto-linking"):
                formatter.write_dl(rows)
        rest = [
            rec
            for p in self.get_params(ctx)
            if not (p.name and p.name.startswith("f_"))
            for rec in [p.get_help_record(ctx)]
            if rec is not None
        ]
        with formatter.section("Linking"):
            formatter.write_dl(rest)
        out = cls.output_class
        with formatter.section(f"Outputs ({out.output_type})"):
            rows = [
                (n, f"{type_name(i.annotation)}  {i.description or ''}".rstrip())
                for n, i in out.output_fields().items()
            ]
            if rows:
                formatter.write_dl(rows)
            else:
                formatter.write_text("(none)")


class NodeCommands:
    """Node commands built on demand from a registry and cached."""

    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self._cache: dict[str, NodeCommand] = {}

    def names(self) -> list[str]:
        return self.registry.types()

    def get(self, type_id: str) -> NodeCommand | None:
        cmd = self._cache.get(type_id)
        if cmd is None:
            if type_id not in self.registry:
                return None
            entry = self.registry.entry(type_id)
            cmd = self._cache[type_id] = NodeCommand(entry.cls, entry.plugin)
        return cmd

    def fields_named(self, name: str) -> list[str]:
        """Node types with a settable input of this name."""
        return [t for t in self.names() if name in (self.get(t) or _EMPTY).specs]


class _Empty:
    specs: dict[str, FieldSpec] = {}


_EMPTY: Any = _Empty()


def node_help(registry: NodeRegistry, type_id: str, info_name: str | None = None) -> str:
    """The help of a node's command (`invokeai nodes TYPE` and `TYPE --help` print the same)."""
    cmd = NodeCommands(registry).get(type_id)
    assert cmd is not None
    ctx = click.Context(
        cmd, info_name=info_name or type_id, **{k: v for k, v in CONTEXT_SETTINGS.items() if k != "help_option_names"}
    )
    ctx.help_option_names = list(CONTEXT_SETTINGS["help_option_names"])
    return cmd.get_help(ctx)


def closest(name: str, choices: list[str], n: int = 3) -> list[str]:
    import difflib

    found = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not found:
        found = [c for c in choices if c.startswith(name[:3])][:n] if len(name) >= 3 else []
    return found

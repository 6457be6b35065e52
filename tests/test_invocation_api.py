"""The plugin-author API: `@invocation`, `@invocation_output`, fields, schemas and node JSON."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from pydantic import ValidationError
from test_kernel_wiring import documented_surface

import invokeai_core
from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    Input,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_core.errors import InvocationDefinitionError


# -- the DESIGN.md example (type ids prefixed s_ so they never clash) -----------------------------
@invocation_output("s_integer_output")
class IntegerOutput(BaseInvocationOutput):
    value: int = OutputField(description="The result")


@invocation("s_add", title="Add Integers", tags=["math"], category="math", version="1.0.0")
class AddInvocation(BaseInvocation):
    """Adds two integers."""

    a: int = InputField(default=0, description="First number")
    b: int = InputField(default=0, description="Second number")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return IntegerOutput(value=self.a + self.b)


@invocation("s_scale", title="Scale", tags=["math", "scale"], category="math", version="1.2.3-beta.1")
class ScaleInvocation(BaseInvocation):
    """Multiplies a value by a factor."""

    value: int = InputField(description="The value to scale", input=Input.Connection, ui_order=1)
    factor: int = InputField(
        default=2, description="The factor", ge=1, le=10, input=Input.Direct, ui_type="integer", ui_order=2
    )
    label: str = InputField(default="", description="A hidden label", ui_hidden=True, ui_component="textarea")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return IntegerOutput(value=self.value * self.factor)


def test_design_example_defines_and_runs(invokeai_register_nodes, invokeai_run_graph):
    assert AddInvocation.invocation_type == "s_add"
    assert AddInvocation.output_class is IntegerOutput
    assert IntegerOutput.output_type == "s_integer_output"
    meta = AddInvocation.invocation_meta
    assert (meta.title, meta.tags, meta.category, meta.version) == (
        "Add Integers",
        ("math",),
        "math",
        "1.0.0",
    )
    assert meta.description == "Adds two integers."

    invokeai_register_nodes(AddInvocation, ScaleInvocation)
    run = invokeai_run_graph(
        {
            "nodes": {
                "sum": {"id": "sum", "type": "s_add", "a": 2, "b": 3},
                "x": {"id": "x", "type": "s_scale", "factor": 4},
            },
            "edges": [
                {
                    "source": {"node_id": "sum", "field": "value"},
                    "destination": {"node_id": "x", "field": "value"},
                }
            ],
        }
    )
    assert run.status == "completed", run.errors
    assert run["sum"] == IntegerOutput(value=5)
    assert run["x"].value == 20


def test_invoke_can_be_called_directly():
    out = AddInvocation(a=40, b=2).invoke(None)  # type: ignore[arg-type]
    assert isinstance(out, IntegerOutput)
    assert out.value == 42


def test_defaults_and_required_inputs():
    node = AddInvocation()
    assert (node.a, node.b, node.use_cache) == (0, 0, True)
    assert node.id  # a generated id
    assert AddInvocation().id != node.id
    assert ScaleInvocation.required_inputs() == ["value"]
    assert AddInvocation.required_inputs() == []
    assert set(ScaleInvocation.input_fields()) == {"value", "factor", "label"}


def test_constraints_are_enforced_on_values():
    with pytest.raises(ValidationError):
        ScaleInvocation(value=1, factor=0)
    with pytest.raises(ValidationError):
        ScaleInvocation(value=1, factor=11)
    with pytest.raises(ValidationError):
        AddInvocation(a=1, c=2)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        IntegerOutput(value=1, extra=2)  # type: ignore[call-arg]


def test_nodes_defined_inside_a_function_resolve_their_output_class():
    # With `from __future__ import annotations` the return annotation is the string "LocalOutput",
    # which only the defining function's frame knows.
    @invocation_output("s_local_output")
    class LocalOutput(BaseInvocationOutput):
        text: str = OutputField()

    @invocation("s_local")
    class LocalInvocation(BaseInvocation):
        def invoke(self, context: InvocationContext) -> LocalOutput:
            return LocalOutput(text="hi")

    assert LocalInvocation.output_class is LocalOutput
    assert LocalInvocation.invocation_meta.title == "S Local"


# -- definition-time errors --------------------------------------------------------------------------
def _define(body: str, decorator: str = '@invocation("s_bad")') -> None:
    """Define a class named Bad from source, so each case is a real class statement."""
    source = f"{decorator}\nclass Bad(BaseInvocation):\n" + "\n".join("    " + ln for ln in body.splitlines())
    exec(compile("from __future__ import annotations\n" + source, "<bad node>", "exec"), dict(globals()))


def _definition_error(body: str, decorator: str = '@invocation("s_bad")') -> InvocationDefinitionError:
    with pytest.raises(InvocationDefinitionError) as info:
        _define(body, decorator)
    err = info.value
    assert err.class_name == "Bad"
    assert str(err).startswith("Bad: ")
    return err


OK_INVOKE = "def invoke(self, context) -> IntegerOutput:\n    return IntegerOutput(value=1)"


def test_the_helper_accepts_a_good_node():
    _define("a: int = InputField(default=1)\n" + OK_INVOKE)  # no error


@pytest.mark.parametrize("version", ["1.0", "1", "v1.0.0", "1.0.0.0", "01.0.0", "latest", ""])
def test_bad_semver_version(version):
    err = _definition_error(OK_INVOKE, f'@invocation("s_bad", version="{version}")')
    assert "semantic version" in err.reason
    assert repr(version) in err.reason


@pytest.mark.parametrize("version", ["0.0.1", "1.0.0", "10.20.30", "1.0.0-alpha.1", "1.0.0+build.5"])
def test_good_semver_versions(version):
    _define(OK_INVOKE, f'@invocation("s_good", version="{version}")')


def test_missing_invoke():
    err = _definition_error("a: int = InputField(default=1)")
    assert "invoke" in err.reason


def test_invoke_without_return_annotation():
    err = _definition_error("def invoke(self, context):\n    return IntegerOutput(value=1)")
    assert "return annotation" in err.reason


def test_invoke_returning_a_non_output_class():
    err = _definition_error("def invoke(self, context) -> int:\n    return 1")
    assert "BaseInvocationOutput" in err.reason


def test_invoke_returning_an_undecorated_output_class():
    class Undecorated(BaseInvocationOutput):
        value: int = OutputField()

    globals()["Undecorated"] = Undecorated
    try:
        err = _definition_error("def invoke(self, context) -> Undecorated:\n    return Undecorated(value=1)")
    finally:
        del globals()["Undecorated"]
    assert "Undecorated" in err.reason
    assert "@invocation_output" in err.reason


def test_unresolvable_return_annotation():
    err = _definition_error("def invoke(self, context) -> NoSuchOutput:\n    ...")
    assert "NoSuchOutput" in err.reason


@pytest.mark.parametrize("field", ["id", "type", "use_cache"])
def test_reserved_field_names(field):
    err = _definition_error(f"{field}: str = InputField(default='x')\n" + OK_INVOKE)
    assert field in err.reason
    assert "reserved" in err.reason


def test_reserved_field_name_from_an_undecorated_base_class():
    class Base(BaseInvocation):
        type: str = InputField(default="x")

    globals()["_ReservedBase"] = Base
    try:
        with pytest.raises(InvocationDefinitionError) as info:
            exec(
                '@invocation("s_bad")\nclass Bad(_ReservedBase):\n    ' + OK_INVOKE.replace("\n", "\n    "),
                dict(globals()),
            )
    finally:
        del globals()["_ReservedBase"]
    assert "type" in info.value.reason
    assert info.value.class_name == "Bad"


def test_reserved_output_field_name():
    with pytest.raises(InvocationDefinitionError) as info:

        @invocation_output("s_bad_output")
        class BadOutput(BaseInvocationOutput):
            type: str = OutputField()

    assert info.value.class_name == "BadOutput"
    assert "type" in info.value.reason


def test_invalid_default_type():
    err = _definition_error('a: int = InputField(default="x")\n' + OK_INVOKE)
    assert "'a'" in err.reason
    assert "'x'" in err.reason
    assert "integer" in err.reason  # pydantic's explanation, not a documentation link
    assert "errors.pydantic.dev" not in err.reason


def test_default_violating_ge():
    err = _definition_error("a: int = InputField(default=-1, ge=0)\n" + OK_INVOKE)
    assert "'a'" in err.reason
    assert "-1" in err.reason
    assert "greater than or equal to 0" in err.reason


def test_default_violating_max_length():
    err = _definition_error('s: str = InputField(default="abc", max_length=2)\n' + OK_INVOKE)
    assert "'s'" in err.reason


def test_invalid_default_factory_result():
    err = _definition_error('a: list[int] = InputField(default_factory=lambda: ["x"])\n' + OK_INVOKE)
    assert "default_factory" in err.reason


def test_valid_defaults_are_accepted():
    _define(
        "a: int | None = InputField(default=None)\n"
        "b: float = InputField(default=1, ge=0)\n"
        "c: list[int] = InputField(default_factory=list)\n" + OK_INVOKE
    )


@pytest.mark.parametrize("type_id", ["Add", "add-ints", "1add", "", "add ints", "_add"])
def test_bad_type_id(type_id):
    err = _definition_error(OK_INVOKE, f'@invocation("{type_id}")')
    assert "type id" in err.reason


def test_bad_output_type_id():
    with pytest.raises(InvocationDefinitionError) as info:

        @invocation_output("Bad Output")
        class BadOutput(BaseInvocationOutput):
            value: int = OutputField()

    assert info.value.class_name == "BadOutput"


def test_decorating_the_wrong_base_class():
    class NotANode(BaseInvocationOutput):
        pass

    class NotAnOutput(BaseInvocation):
        pass

    wrong_node: Any = NotANode
    wrong_output: Any = NotAnOutput
    with pytest.raises(InvocationDefinitionError) as info:
        invocation("s_not_a_node")(wrong_node)
    assert info.value.class_name == "NotANode"
    with pytest.raises(InvocationDefinitionError) as info:
        invocation_output("s_not_an_output")(wrong_output)
    assert info.value.class_name == "NotAnOutput"


def test_bad_tags():
    err = _definition_error(OK_INVOKE, '@invocation("s_bad", tags="math")')
    assert "tags" in err.reason


# -- the public API ------------------------------------------------------------------------------------
DESIGN_API = {
    "BaseInvocation",
    "BaseInvocationOutput",
    "InvocationContext",
    "invocation",
    "invocation_output",
    "InputField",
    "OutputField",
    "ImageField",
    "hookimpl",
}
#: The full documented list (docs/plugins.md, "The plugin-author surface"; `invokeai_core/__init__.py`:
#: "The plugin-author API is everything in __all__").
DOCUMENTED_API = documented_surface()


def test_all_is_exactly_the_documented_api():
    assert set(invokeai_core.__all__) == DOCUMENTED_API
    assert len(invokeai_core.__all__) == len(set(invokeai_core.__all__))
    assert DESIGN_API <= set(invokeai_core.__all__)


def test_every_name_in_all_resolves():
    module = importlib.import_module("invokeai_core")
    for name in invokeai_core.__all__:
        assert getattr(module, name) is not None, name
    assert module.BaseInvocation is BaseInvocation
    assert module.InvocationContext is InvocationContext
    assert isinstance(module.__version__, str)
    assert set(invokeai_core.__all__) <= set(dir(module))
    with pytest.raises(AttributeError):
        module.NoSuchName  # noqa: B018


# -- JSON schema -----------------------------------------------------------------------------------------
def test_node_json_schema_carries_metadata():
    schema = ScaleInvocation.model_json_schema()
    props = schema["properties"]
    assert props["type"]["const"] == "s_scale"
    assert schema["title"] == "Scale"
    assert schema["tags"] == ["math", "scale"]
    assert schema["category"] == "math"
    assert schema["version"] == "1.2.3-beta.1"
    assert schema["description"] == "Multiplies a value by a factor."
    assert schema["output_type"] == "s_integer_output"
    assert props["value"]["description"] == "The value to scale"
    assert props["value"]["input"] == "connection"
    assert props["factor"]["input"] == "direct"
    assert props["label"]["input"] == "any"
    assert props["factor"]["ui_type"] == "integer"
    assert (props["value"]["ui_order"], props["factor"]["ui_order"]) == (1, 2)
    assert props["label"]["ui_hidden"] is True
    assert props["label"]["ui_component"] == "textarea"
    assert (props["factor"]["minimum"], props["factor"]["maximum"], props["factor"]["default"]) == (1, 10, 2)
    assert "type" in schema["required"]
    assert "value" in schema["required"]
    assert "default" not in props["value"]  # a required input shows no placeholder default
    assert "factor" not in schema["required"]
    assert "label" not in schema["required"]


def test_design_example_schema():
    schema = AddInvocation.model_json_schema()
    assert schema["properties"]["type"]["const"] == "s_add"
    assert schema["title"] == "Add Integers"
    assert schema["properties"]["a"]["description"] == "First number"
    assert schema["required"] == ["type"]


def test_output_json_schema():
    schema = IntegerOutput.model_json_schema()
    assert schema["properties"]["type"]["const"] == "s_integer_output"
    assert schema["properties"]["value"]["description"] == "The result"
    assert set(schema["required"]) == {"type", "value"}


# -- node JSON -----------------------------------------------------------------------------------------------
def test_node_json_round_trip_includes_type():
    node = ScaleInvocation(id="n1", value=3, factor=5, label="hello")
    data = json.loads(node.model_dump_json())
    assert data == {
        "id": "n1",
        "type": "s_scale",
        "use_cache": True,
        "value": 3,
        "factor": 5,
        "label": "hello",
    }
    assert node.model_dump()["type"] == "s_scale"
    again = ScaleInvocation.model_validate_json(node.model_dump_json())
    assert again == node
    assert ScaleInvocation.model_validate(data) == node


def test_output_json_round_trip_includes_type():
    out = IntegerOutput(value=7)
    data = out.model_dump()
    assert data == {"type": "s_integer_output", "value": 7}
    assert IntegerOutput.model_validate(data) == out
    with pytest.raises(ValidationError):
        IntegerOutput.model_validate({"type": "s_other_output", "value": 7})


def test_parsing_json_with_a_wrong_type_fails():
    with pytest.raises(ValidationError) as info:
        AddInvocation.model_validate_json('{"id": "n", "type": "s_scale", "a": 1}')
    assert "s_scale" in str(info.value)
    assert "s_add" in str(info.value)


def test_excluded_id_stays_excluded():
    # The output cache keys on the dump without id: two nodes with equal inputs must dump equally.
    one = AddInvocation(id="one", a=1, b=2)
    two = AddInvocation(id="two", a=1, b=2)
    dumped = one.model_dump(exclude={"id", "use_cache"})
    assert "id" not in dumped
    assert dumped == {"type": "s_add", "a": 1, "b": 2}
    assert one.model_dump_json(exclude={"id", "use_cache"}) == two.model_dump_json(exclude={"id", "use_cache"})


def test_equal_nodes_with_different_ids_share_the_output_cache(invokeai_register_nodes, invokeai_invoker):
    calls: list[int] = []

    @invocation("s_counting_add")
    class CountingAdd(BaseInvocation):
        a: int = InputField(default=0)

        def invoke(self, context: InvocationContext) -> IntegerOutput:
            calls.append(self.a)
            return IntegerOutput(value=self.a + 1)

    invokeai_register_nodes(CountingAdd)
    session = invokeai_invoker.run_graph(
        {
            "nodes": {
                "first": {"id": "first", "type": "s_counting_add", "a": 5},
                "second": {"id": "second", "type": "s_counting_add", "a": 5},
            },
            "edges": [],
        },
        timeout=30,
    )
    assert session.status == "completed"
    assert session.results_by_source()["second"].value == 6
    assert calls == [5]  # the second node was served from the cache


def test_image_field_is_a_small_reference():
    field = ImageField(image_name="abc.png")
    assert field.model_dump() == {"image_name": "abc.png"}
    with pytest.raises(ValidationError):
        ImageField(image_name="abc.png", width=3)  # type: ignore[call-arg]


def test_input_field_records_metadata():
    info: Any = ScaleInvocation.model_fields["value"]
    extra = info.json_schema_extra
    assert extra["field_kind"] == "input"
    assert extra["orig_required"] is True
    assert ScaleInvocation.model_fields["factor"].json_schema_extra["orig_required"] is False  # type: ignore[index]
    out_extra: Any = IntegerOutput.model_fields["value"].json_schema_extra
    assert out_extra["field_kind"] == "output"


@invocation_output("s_ref_output")
class RefOutput(BaseInvocationOutput):
    image: ImageField = OutputField()


@invocation("s_needs_image")
class NeedsImage(BaseInvocation):
    image: ImageField = InputField(description="Fed by an edge")
    strength: float = InputField(default=0.5)

    def invoke(self, context: InvocationContext) -> RefOutput:
        return RefOutput(image=self.image)


def test_unset_required_input_round_trips_through_json():
    node = NeedsImage(id="n")
    assert node.image is None  # the placeholder until an edge feeds it
    data = json.loads(node.model_dump_json())
    assert data["image"] is None
    again = NeedsImage.model_validate(data)
    assert again.image is None
    assert "image" not in again.model_fields_set
    assert again == node
    set_node = NeedsImage.model_validate({"id": "m", "type": "s_needs_image", "image": {"image_name": "x.png"}})
    assert set_node.image == ImageField(image_name="x.png")
    assert NeedsImage.model_validate(json.loads(set_node.model_dump_json())) == set_node
    with pytest.raises(ValidationError):
        NeedsImage.model_validate({"id": "m", "strength": None})  # only required inputs take the placeholder

"""Primitive value nodes: a value in, the same value out.

They exist so that one value typed once can feed many nodes (and so that UIs have a widget to edit
it); they do no work. The image primitives live in `image_primitives`.
"""

from __future__ import annotations

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_nodes.fields import ColorField


@invocation_output("integer_output")
class IntegerOutput(BaseInvocationOutput):
    """One integer."""

    value: int = OutputField(description="The output integer")


@invocation_output("float_output")
class FloatOutput(BaseInvocationOutput):
    """One float."""

    value: float = OutputField(description="The output float")


@invocation_output("string_output")
class StringOutput(BaseInvocationOutput):
    """One string."""

    value: str = OutputField(description="The output string")


@invocation_output("boolean_output")
class BooleanOutput(BaseInvocationOutput):
    """One boolean."""

    value: bool = OutputField(description="The output boolean")


@invocation_output("color_output")
class ColorOutput(BaseInvocationOutput):
    """One color."""

    color: ColorField = OutputField(description="The output color")


@invocation_output("integer_collection_output")
class IntegerCollectionOutput(BaseInvocationOutput):
    """A list of integers."""

    collection: list[int] = OutputField(description="The integers")


@invocation_output("float_collection_output")
class FloatCollectionOutput(BaseInvocationOutput):
    """A list of floats."""

    collection: list[float] = OutputField(description="The floats")


@invocation_output("string_collection_output")
class StringCollectionOutput(BaseInvocationOutput):
    """A list of strings."""

    collection: list[str] = OutputField(description="The strings")


@invocation("integer", title="Integer", tags=["primitive", "integer"], category="primitives", version="1.0.0")
class IntegerInvocation(BaseInvocation):
    """An integer value."""

    value: int = InputField(default=0, description="The integer value")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        return IntegerOutput(value=self.value)


@invocation("float", title="Float", tags=["primitive", "float"], category="primitives", version="1.0.0")
class FloatInvocation(BaseInvocation):
    """A float value."""

    value: float = InputField(default=0.0, description="The float value")

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=self.value)


@invocation("string", title="String", tags=["primitive", "string"], category="primitives", version="1.0.0")
class StringInvocation(BaseInvocation):
    """A string value."""

    value: str = InputField(default="", description="The string value", ui_component="textarea")

    def invoke(self, context: InvocationContext) -> StringOutput:
        return StringOutput(value=self.value)


@invocation("boolean", title="Boolean", tags=["primitive", "boolean"], category="primitives", version="1.0.0")
class BooleanInvocation(BaseInvocation):
    """A boolean value."""

    value: bool = InputField(default=False, description="The boolean value")

    def invoke(self, context: InvocationContext) -> BooleanOutput:
        return BooleanOutput(value=self.value)


@invocation("color", title="Color", tags=["primitive", "color"], category="primitives", version="1.0.0")
class ColorInvocation(BaseInvocation):
    """An RGBA color (e.g. the fill of `blank_image`)."""

    color: ColorField = InputField(
        default=ColorField(r=0, g=0, b=0, a=255),
        description="The color: {r, g, b, a} with channels 0..255, or a hex string such as '#ff8800'",
    )

    def invoke(self, context: InvocationContext) -> ColorOutput:
        return ColorOutput(color=self.color)


@invocation(
    "integer_collection",
    title="Integer Collection",
    tags=["primitive", "collection"],
    category="primitives",
    version="1.0.0",
)
class IntegerCollectionInvocation(BaseInvocation):
    """A list of integers."""

    collection: list[int] = InputField(default=[], description="The integers")

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        return IntegerCollectionOutput(collection=list(self.collection))


@invocation(
    "float_collection",
    title="Float Collection",
    tags=["primitive", "collection"],
    category="primitives",
    version="1.0.0",
)
class FloatCollectionInvocation(BaseInvocation):
    """A list of floats."""

    collection: list[float] = InputField(default=[], description="The floats")

    def invoke(self, context: InvocationContext) -> FloatCollectionOutput:
        return FloatCollectionOutput(collection=list(self.collection))


@invocation(
    "string_collection",
    title="String Collection",
    tags=["primitive", "collection"],
    category="primitives",
    version="1.0.0",
)
class StringCollectionInvocation(BaseInvocation):
    """A list of strings."""

    collection: list[str] = InputField(default=[], description="The strings")

    def invoke(self, context: InvocationContext) -> StringCollectionOutput:
        return StringCollectionOutput(collection=list(self.collection))


NODES: list[type[BaseInvocation]] = [
    IntegerInvocation,
    FloatInvocation,
    StringInvocation,
    BooleanInvocation,
    ColorInvocation,
    IntegerCollectionInvocation,
    FloatCollectionInvocation,
    StringCollectionInvocation,
]

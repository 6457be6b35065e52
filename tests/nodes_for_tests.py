"""Small node classes for the kernel's engine tests.

Every type id starts with `t_` so these never clash with a real plugin's nodes. `make_registry()`
builds a standalone `NodeRegistry` with the flow nodes and these, for graph tests that need no
plugin host; session tests register `ALL_NODES` through the `invokeai_register_nodes` fixture.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from pydantic import BaseModel

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_core.invocations.fields import Input
from invokeai_core.invocations.flow import CollectInvocation, IterateInvocation
from invokeai_core.registry import NodeRegistry

# -- outputs -----------------------------------------------------------------------------------


@invocation_output("t_int_output")
class IntOutput(BaseInvocationOutput):
    value: int = OutputField(description="An integer")


@invocation_output("t_float_output")
class FloatOutput(BaseInvocationOutput):
    value: float = OutputField(description="A float")


@invocation_output("t_str_output")
class StrOutput(BaseInvocationOutput):
    value: str = OutputField(description="A string")


@invocation_output("t_int_list_output")
class IntListOutput(BaseInvocationOutput):
    collection: list[int] = OutputField(description="Integers")


@invocation_output("t_float_list_output")
class FloatListOutput(BaseInvocationOutput):
    collection: list[float] = OutputField(description="Floats")


@invocation_output("t_str_list_output")
class StrListOutput(BaseInvocationOutput):
    collection: list[str] = OutputField(description="Strings")


@invocation_output("t_nested_list_output")
class NestedListOutput(BaseInvocationOutput):
    collection: list[list[int]] = OutputField(description="Lists of integers")


@invocation_output("t_union_output")
class UnionOutput(BaseInvocationOutput):
    value: int | str = OutputField(description="An integer or a string")


@invocation_output("t_literal_output")
class LiteralOutput(BaseInvocationOutput):
    mode: Literal["fast", "slow"] = OutputField(description="A mode")


@invocation_output("t_image_output")
class ImageOutput(BaseInvocationOutput):
    image: ImageField = OutputField(description="An image reference")
    width: int = OutputField(description="Width")


@invocation_output("t_not_list_output")
class NotAListOutput(BaseInvocationOutput):
    collection: int = OutputField(description="Named like a collection, but an int")


class Animal(BaseModel):
    name: str


class Dog(Animal):
    barks: bool = True


@invocation_output("t_dog_output")
class DogOutput(BaseInvocationOutput):
    animal: Dog = OutputField(description="A dog (a subclass of Animal)")


@invocation_output("t_animal_output")
class AnimalOutput(BaseInvocationOutput):
    name: str = OutputField(description="The animal's name")


# -- nodes -------------------------------------------------------------------------------------


@invocation("t_int", version="1.0.0")
class IntNode(BaseInvocation):
    """An integer primitive."""

    value: int = InputField(default=0, description="The value")

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.value)


@invocation("t_add", version="1.0.0")
class AddNode(BaseInvocation):
    """a + b"""

    a: int = InputField(default=0)
    b: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.a + self.b)


@invocation("t_mul", version="1.0.0")
class MulNode(BaseInvocation):
    """a * b"""

    a: int = InputField(default=0)
    b: int = InputField(default=1)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.a * self.b)


@invocation("t_scale", version="1.0.0")
class ScaleNode(BaseInvocation):
    """value * factor (input and output share the name `value`, for auto-link tests)."""

    value: int = InputField(default=0)
    factor: int = InputField(default=2)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.value * self.factor)


@invocation("t_float", version="1.0.0")
class FloatNode(BaseInvocation):
    """Takes a float; doubles it."""

    value: float = InputField(default=0.0)

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=self.value * 2)


@invocation("t_str", version="1.0.0")
class StrNode(BaseInvocation):
    """Takes a string named `value`; upper-cases it."""

    value: str = InputField(default="")

    def invoke(self, context: InvocationContext) -> StrOutput:
        return StrOutput(value=self.value.upper())


@invocation("t_range", version="1.0.0")
class RangeNode(BaseInvocation):
    """list(range(start, stop))"""

    start: int = InputField(default=0)
    stop: int = InputField(default=3)

    def invoke(self, context: InvocationContext) -> IntListOutput:
        return IntListOutput(collection=list(range(self.start, self.stop)))


@invocation("t_int_list", version="1.0.0")
class IntListNode(BaseInvocation):
    """A list of integers as given."""

    collection: list[int] = InputField(default=[])

    def invoke(self, context: InvocationContext) -> IntListOutput:
        return IntListOutput(collection=list(self.collection))


@invocation("t_float_list", version="1.0.0")
class FloatListNode(BaseInvocation):
    """A list of floats as given."""

    collection: list[float] = InputField(default=[])

    def invoke(self, context: InvocationContext) -> FloatListOutput:
        return FloatListOutput(collection=list(self.collection))


@invocation("t_str_list", version="1.0.0")
class StrListNode(BaseInvocation):
    """A list of strings as given."""

    collection: list[str] = InputField(default=[])

    def invoke(self, context: InvocationContext) -> StrListOutput:
        return StrListOutput(collection=list(self.collection))


@invocation("t_nested_list", version="1.0.0")
class NestedListNode(BaseInvocation):
    """A list of lists of integers as given."""

    collection: list[list[int]] = InputField(default=[])

    def invoke(self, context: InvocationContext) -> NestedListOutput:
        return NestedListOutput(collection=[list(x) for x in self.collection])


@invocation("t_not_list", version="1.0.0")
class NotAListNode(BaseInvocation):
    """Outputs an int named `collection`."""

    value: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> NotAListOutput:
        return NotAListOutput(collection=self.value)


@invocation("t_sum_ints", version="1.0.0")
class SumIntsNode(BaseInvocation):
    """Sums a list[int]."""

    collection: list[int] = InputField(default=[])

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=sum(self.collection))


@invocation("t_sum_floats", version="1.0.0")
class SumFloatsNode(BaseInvocation):
    """Sums a list[float]."""

    collection: list[float] = InputField(default=[])

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=float(sum(self.collection)))


@invocation("t_fail", version="1.0.0")
class FailNode(BaseInvocation):
    """Raises ValueError with its message."""

    a: int = InputField(default=0)
    message: str = InputField(default="boom")

    def invoke(self, context: InvocationContext) -> IntOutput:
        raise ValueError(f"{self.message} ({self.a})")


@invocation("t_fail_on", version="1.0.0")
class FailOnNode(BaseInvocation):
    """Passes `a` through, but raises for one value."""

    a: int = InputField(default=0)
    bad: int = InputField(default=-1)

    def invoke(self, context: InvocationContext) -> IntOutput:
        if self.a == self.bad:
            raise RuntimeError(f"bad value {self.a}")
        return IntOutput(value=self.a)


@invocation("t_required", version="1.0.0")
class RequiredNode(BaseInvocation):
    """Has a required input `a`."""

    a: int = InputField(description="Required")
    b: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.a + self.b)


@invocation("t_direct", version="1.0.0")
class DirectNode(BaseInvocation):
    """`a` takes only a direct value."""

    a: int = InputField(default=0, input=Input.Direct)
    b: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.a + self.b)


@invocation("t_bounded", version="1.0.0")
class BoundedNode(BaseInvocation):
    """`a` must be in 0..10."""

    a: int = InputField(default=0, ge=0, le=10)

    def invoke(self, context: InvocationContext) -> IntOutput:
        return IntOutput(value=self.a)


@invocation("t_union_out", version="1.0.0")
class UnionOutNode(BaseInvocation):
    """Outputs `int | str`."""

    value: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> UnionOutput:
        return UnionOutput(value=self.value)


@invocation("t_union_in", version="1.0.0")
class UnionInNode(BaseInvocation):
    """Takes `int | str` and an optional int."""

    value: int | str = InputField(default=0)
    maybe: int | None = InputField(default=None)

    def invoke(self, context: InvocationContext) -> StrOutput:
        return StrOutput(value=f"{self.value!r}/{self.maybe!r}")


@invocation("t_literal", version="1.0.0")
class LiteralNode(BaseInvocation):
    """Outputs a Literal-typed mode."""

    mode: Literal["fast", "slow"] = InputField(default="fast")

    def invoke(self, context: InvocationContext) -> LiteralOutput:
        return LiteralOutput(mode=self.mode)


@invocation("t_literal_in", version="1.0.0")
class LiteralInNode(BaseInvocation):
    """Takes a Literal-typed mode."""

    mode: Literal["fast", "slow"] = InputField(default="fast")

    def invoke(self, context: InvocationContext) -> LiteralOutput:
        return LiteralOutput(mode=self.mode)


@invocation("t_image", version="1.0.0")
class ImageNode(BaseInvocation):
    """Takes an image reference (required) and returns it with a width."""

    image: ImageField = InputField(description="An image reference")
    width: int = InputField(default=8)

    def invoke(self, context: InvocationContext) -> ImageOutput:
        return ImageOutput(image=ImageField(image_name=self.image.image_name + "+"), width=self.width)


@invocation("t_dog", version="1.0.0")
class DogNode(BaseInvocation):
    """Outputs a Dog."""

    name: str = InputField(default="rex")

    def invoke(self, context: InvocationContext) -> DogOutput:
        return DogOutput(animal=Dog(name=self.name))


@invocation("t_animal", version="1.0.0")
class AnimalNode(BaseInvocation):
    """Takes an Animal."""

    animal: Animal = InputField(default=Animal(name="generic"))

    def invoke(self, context: InvocationContext) -> AnimalOutput:
        return AnimalOutput(name=f"{type(self.animal).__name__}:{self.animal.name}")


@invocation("t_any", version="1.0.0")
class AnyNode(BaseInvocation):
    """Takes anything; outputs its repr."""

    value: Any = InputField(default=None)

    def invoke(self, context: InvocationContext) -> StrOutput:
        return StrOutput(value=repr(self.value))


# A process-wide log of `t_record` invocations, for order tests (guarded: workers are threads).
RECORD_LOG: list[tuple[str, int]] = []
_record_lock = threading.Lock()


@invocation("t_record", version="1.0.0", use_cache=False)
class RecordNode(BaseInvocation):
    """Appends (node id, a) to RECORD_LOG and passes `a` through."""

    a: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> IntOutput:
        with _record_lock:
            RECORD_LOG.append((context.node_id, self.a))
        return IntOutput(value=self.a)


ALL_NODES: tuple[type[BaseInvocation], ...] = (
    IntNode,
    AddNode,
    MulNode,
    ScaleNode,
    FloatNode,
    StrNode,
    RangeNode,
    IntListNode,
    FloatListNode,
    StrListNode,
    NestedListNode,
    NotAListNode,
    SumIntsNode,
    SumFloatsNode,
    FailNode,
    FailOnNode,
    RequiredNode,
    DirectNode,
    BoundedNode,
    UnionOutNode,
    UnionInNode,
    LiteralNode,
    LiteralInNode,
    ImageNode,
    DogNode,
    AnimalNode,
    AnyNode,
    RecordNode,
)


def make_registry() -> NodeRegistry:
    """A registry with the two flow nodes and every `t_` node (no plugin host involved)."""
    registry = NodeRegistry()
    registry.add(IterateInvocation, "core")
    registry.add(CollectInvocation, "core")
    for cls in ALL_NODES:
        registry.add(cls, "tests")
    return registry


def node(node_id: str, type_: str, **fields: Any) -> dict[str, Any]:
    """A node's JSON."""
    return {"id": node_id, "type": type_, **fields}


def edge(source: str, source_field: str, destination: str, destination_field: str) -> dict[str, Any]:
    """An edge's JSON."""
    return {
        "source": {"node_id": source, "field": source_field},
        "destination": {"node_id": destination, "field": destination_field},
    }


def graph(*items: dict[str, Any]) -> dict[str, Any]:
    """Graph JSON from node and edge dicts (edges are the ones with a `source` key)."""
    nodes = {n["id"]: n for n in items if "source" not in n}
    edges = [e for e in items if "source" in e]
    return {"nodes": nodes, "edges": edges}

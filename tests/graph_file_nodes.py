"""Node types at two versions, and their migrations, for the graph-file tests (type ids `gf_*`).

`gf_blur` 1.0.0 had an input `radius` (in pixels, an int); 2.0.0 calls it `size` and takes a float, and
1.5.0 added `mode`. `blur_to_2` is the migration a plugin registers for 2.0.0.
"""

from __future__ import annotations

from typing import Any

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)


@invocation_output("gf_size_output")
class SizeOutput(BaseInvocationOutput):
    size: float = OutputField(description="The size used")


@invocation("gf_blur", title="Blur", category="tests", version="2.0.0")
class BlurV2(BaseInvocation):
    """Version 2.0.0: `radius` is now `size`."""

    size: float = InputField(default=2.0, ge=0, description="Blur size in pixels")
    mode: str = InputField(default="box", description="Added in 1.5.0")

    def invoke(self, context: InvocationContext) -> SizeOutput:
        return SizeOutput(size=self.size)


@invocation_output("gf_number_output")
class NumberOutput(BaseInvocationOutput):
    number: float = OutputField(description="A number")


@invocation("gf_number", title="Number", category="tests", version="1.0.0")
class NumberInvocation(BaseInvocation):
    """A number to feed `gf_blur`."""

    number: float = InputField(default=1.0, description="The number")

    def invoke(self, context: InvocationContext) -> NumberOutput:
        return NumberOutput(number=self.number)


def blur_to_1_5(node: dict[str, Any]) -> dict[str, Any]:
    node.setdefault("mode", "gaussian")  # 1.0.x blurred the gaussian way
    return node


def blur_to_2(node: dict[str, Any]) -> dict[str, Any]:
    if "radius" in node:
        node["size"] = float(node.pop("radius"))
    return node

"""Integer and float math.

Division by zero and other impossible operations are node errors whose message names the input,
since the offending value usually arrives through an edge and is only known when the node runs.
"""

from __future__ import annotations

import math as _math
import random
from typing import ClassVar, Literal, Self

from pydantic import ValidationInfo, model_validator

from invokeai_core import BaseInvocation, InputField, InvocationContext, invocation
from invokeai_nodes.limits import check_bits
from invokeai_nodes.primitives import FloatOutput, IntegerOutput
from invokeai_nodes.validation import InvalidInputError, check_when_built


def result_bits(op: str, a: int, b: int) -> int:
    """An upper bound of the bit length of `a <op> b`, computed without doing the operation."""
    bits = max(a.bit_length(), b.bit_length())
    if op in ("add", "sub"):
        return bits + 1
    if op == "mul":
        return a.bit_length() + b.bit_length()
    if op == "exp":
        return 1 if abs(a) <= 1 or b <= 0 else int(b * _math.log2(abs(a))) + 1
    return bits  # div, mod, abs, min, max never grow


def check_result_bits(node: BaseInvocation, op: str, context: InvocationContext | None = None) -> None:
    """Refuse an operation whose result would pass `limits.integer_bits`, naming the larger input."""
    a, b = getattr(node, "a"), getattr(node, "b")  # noqa: B009 (every integer math node has a and b)
    field = "b" if op == "exp" or b.bit_length() > a.bit_length() else "a"
    check_bits(type(node).invocation_type, field, result_bits(op, a, b), context)


class _BoundedIntegerMath(BaseInvocation):
    """The bit-length check of the two-input integer nodes (`bounded_op` names their operation)."""

    bounded_op: ClassVar[str] = "add"

    @model_validator(mode="after")
    def _check_bits(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, lambda: check_result_bits(self, self.bounded_op), needs=("a", "b"))
        return self


@invocation("add", title="Add Integers", tags=["math", "add"], category="math", version="1.0.0")
class AddInvocation(_BoundedIntegerMath):
    """Adds two integers."""

    a: int = InputField(default=0, description="The first number")
    b: int = InputField(default=0, description="The second number")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        check_result_bits(self, "add", context)
        return IntegerOutput(value=self.a + self.b)


@invocation("sub", title="Subtract Integers", tags=["math", "subtract"], category="math", version="1.0.0")
class SubtractInvocation(_BoundedIntegerMath):
    """Subtracts b from a."""

    bounded_op = "sub"

    a: int = InputField(default=0, description="The first number")
    b: int = InputField(default=0, description="The number to subtract")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        check_result_bits(self, "sub", context)
        return IntegerOutput(value=self.a - self.b)


@invocation("mul", title="Multiply Integers", tags=["math", "multiply"], category="math", version="1.0.0")
class MultiplyInvocation(_BoundedIntegerMath):
    """Multiplies two integers."""

    bounded_op = "mul"

    a: int = InputField(default=0, description="The first number")
    b: int = InputField(default=0, description="The second number")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        check_result_bits(self, "mul", context)
        return IntegerOutput(value=self.a * self.b)


@invocation("div", title="Divide Integers", tags=["math", "divide"], category="math", version="1.0.0")
class DivideInvocation(BaseInvocation):
    """Divides a by b, rounding toward zero (integer division)."""

    a: int = InputField(default=0, description="The dividend")
    b: int = InputField(default=1, description="The divisor (not zero)")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        if self.b == 0:
            raise ZeroDivisionError(f"div: cannot divide {self.a} by zero (input 'b' is 0)")
        return IntegerOutput(value=int(self.a / self.b))


INTEGER_OPERATIONS = Literal["add", "sub", "mul", "div", "exp", "abs", "min", "max", "mod"]
FLOAT_OPERATIONS = Literal["add", "sub", "mul", "div", "exp", "abs", "min", "max", "sqrt"]


@invocation("integer_math", title="Integer Math", tags=["math", "integer"], category="math", version="1.0.0")
class IntegerMathInvocation(BaseInvocation):
    """Applies an operation to two integers (`abs` uses only `a`)."""

    operation: INTEGER_OPERATIONS = InputField(default="add", description="The operation")
    a: int = InputField(default=0, description="The first number")
    b: int = InputField(default=0, description="The second number")

    @model_validator(mode="after")
    def _check_bits(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, lambda: check_result_bits(self, self.operation), needs=("a", "b"))
        return self

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        a, b, op = self.a, self.b, self.operation
        if op in ("div", "mod") and b == 0:
            raise ZeroDivisionError(f"integer_math: '{op}' by zero (input 'b' is 0)")
        if op == "exp" and b < 0:
            raise ValueError(f"integer_math: 'exp' needs a non-negative exponent, got b={b}")
        check_result_bits(self, op, context)
        result = {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "div": lambda: int(a / b),
            "exp": lambda: a**b,
            "abs": lambda: abs(a),
            "min": lambda: min(a, b),
            "max": lambda: max(a, b),
            "mod": lambda: a % b,
        }[op]()
        return IntegerOutput(value=result)


@invocation("float_math", title="Float Math", tags=["math", "float"], category="math", version="1.0.0")
class FloatMathInvocation(BaseInvocation):
    """Applies an operation to two floats (`abs` and `sqrt` use only `a`)."""

    operation: FLOAT_OPERATIONS = InputField(default="add", description="The operation")
    a: float = InputField(default=0.0, description="The first number")
    b: float = InputField(default=0.0, description="The second number")

    def invoke(self, context: InvocationContext) -> FloatOutput:
        a, b, op = self.a, self.b, self.operation
        if op == "div" and b == 0:
            raise ZeroDivisionError("float_math: 'div' by zero (input 'b' is 0)")
        if op == "sqrt" and a < 0:
            raise ValueError(f"float_math: 'sqrt' of a negative number (a={a})")
        if op == "exp" and a == 0 and b < 0:
            raise ZeroDivisionError("float_math: 0 raised to a negative power")
        result = {
            "add": lambda: a + b,
            "sub": lambda: a - b,
            "mul": lambda: a * b,
            "div": lambda: a / b,
            "exp": lambda: a**b,
            "abs": lambda: abs(a),
            "min": lambda: min(a, b),
            "max": lambda: max(a, b),
            "sqrt": lambda: _math.sqrt(a),
        }[op]()
        if isinstance(result, complex):
            raise ValueError(f"float_math: {a} ** {b} is not a real number")
        return FloatOutput(value=float(result))


@invocation("round_float", title="Round Float", tags=["math", "round"], category="math", version="1.0.0")
class RoundInvocation(BaseInvocation):
    """Rounds a float to a number of decimal places."""

    value: float = InputField(default=0.0, description="The float to round")
    decimals: int = InputField(default=0, ge=0, le=15, description="Decimal places")

    def invoke(self, context: InvocationContext) -> FloatOutput:
        return FloatOutput(value=round(self.value, self.decimals))


@invocation("float_to_int", title="Float To Integer", tags=["math", "convert"], category="math", version="1.0.0")
class FloatToIntegerInvocation(BaseInvocation):
    """Converts a float to an integer, rounding to a multiple."""

    value: float = InputField(default=0.0, description="The float to convert")
    multiple: int = InputField(default=1, ge=1, description="Round to a multiple of this")
    method: Literal["nearest", "floor", "ceiling", "truncate"] = InputField(
        default="nearest", description="How to round"
    )

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        x = self.value / self.multiple
        if self.method == "nearest":
            rounded = round(x)
        elif self.method == "floor":
            rounded = _math.floor(x)
        elif self.method == "ceiling":
            rounded = _math.ceil(x)
        else:
            rounded = _math.trunc(x)
        return IntegerOutput(value=rounded * self.multiple)


@invocation(
    "rand_int", title="Random Integer", tags=["math", "random"], category="math", version="1.0.0", use_cache=False
)
class RandomIntInvocation(BaseInvocation):
    """A random integer in [low, high), reproducible for a given seed. Never cached."""

    low: int = InputField(default=0, description="Inclusive lower bound")
    high: int = InputField(default=2147483647, description="Exclusive upper bound")
    seed: int | None = InputField(default=None, description="Seed (None: a fresh random value each run)")

    @model_validator(mode="after")
    def _check_bounds(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("low", "high"))
        return self

    def _check(self) -> None:
        if self.high <= self.low:
            raise InvalidInputError("rand_int", "high", f"must be greater than low ({self.low}), got {self.high}")

    def invoke(self, context: InvocationContext) -> IntegerOutput:
        self._check()
        rng = random.Random(self.seed)
        return IntegerOutput(value=rng.randrange(self.low, self.high))


NODES: list[type[BaseInvocation]] = [
    AddInvocation,
    SubtractInvocation,
    MultiplyInvocation,
    DivideInvocation,
    IntegerMathInvocation,
    FloatMathInvocation,
    RoundInvocation,
    FloatToIntegerInvocation,
    RandomIntInvocation,
]

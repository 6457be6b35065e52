"""Collections of numbers: what `iterate` runs a graph over."""

from __future__ import annotations

import random
from typing import Self

from pydantic import ValidationInfo, model_validator

from invokeai_core import BaseInvocation, InputField, InvocationContext, invocation
from invokeai_nodes.limits import check_items
from invokeai_nodes.primitives import IntegerCollectionOutput
from invokeai_nodes.validation import InvalidInputError, NonZeroInt, check_when_built


@invocation("range", title="Integer Range", tags=["collection", "range"], category="collections", version="1.0.0")
class RangeInvocation(BaseInvocation):
    """Integers from start (inclusive) to stop (exclusive) by step, like Python's range."""

    start: int = InputField(default=0, description="The first value")
    stop: int = InputField(default=10, description="The end (exclusive)")
    step: NonZeroInt = InputField(default=1, description="The step (not zero; negative counts down)")

    @model_validator(mode="after")
    def _check_size(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("stop",))
        return self

    def _check(self, context: InvocationContext | None = None) -> None:
        span = self.stop - self.start
        count = max(0, -(-span // self.step))  # ceil(span / step), exact for any integers
        check_items("range", "stop", count, context)

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        self._check(context)
        return IntegerCollectionOutput(collection=list(range(self.start, self.stop, self.step)))


@invocation(
    "range_of_size",
    title="Integer Range of Size",
    tags=["collection", "range"],
    category="collections",
    version="1.0.0",
)
class RangeOfSizeInvocation(BaseInvocation):
    """`size` integers starting at `start`, `step` apart."""

    start: int = InputField(default=0, description="The first value")
    size: int = InputField(default=1, ge=0, description="How many values")
    step: int = InputField(default=1, description="The step")

    @model_validator(mode="after")
    def _check_size(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, lambda: check_items("range_of_size", "size", self.size), needs=("size",))
        return self

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        check_items("range_of_size", "size", self.size, context)
        return IntegerCollectionOutput(collection=[self.start + i * self.step for i in range(self.size)])


@invocation(
    "random_range",
    title="Random Range",
    tags=["collection", "random"],
    category="collections",
    version="1.0.0",
    use_cache=False,
)
class RandomRangeInvocation(BaseInvocation):
    """`size` random integers in [low, high), reproducible for a given seed."""

    low: int = InputField(default=0, description="Inclusive lower bound")
    high: int = InputField(default=2147483647, description="Exclusive upper bound")
    size: int = InputField(default=1, ge=0, description="How many values")
    seed: int = InputField(default=0, description="The seed")

    @model_validator(mode="after")
    def _check_bounds(self, info: ValidationInfo) -> Self:
        check_when_built(self, info, self._check, needs=("low", "high"))
        check_when_built(self, info, lambda: check_items("random_range", "size", self.size), needs=("size",))
        return self

    def _check(self) -> None:
        if self.high <= self.low:
            raise InvalidInputError("random_range", "high", f"must be greater than low ({self.low}), got {self.high}")

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        self._check()
        check_items("random_range", "size", self.size, context)
        rng = random.Random(self.seed)
        return IntegerCollectionOutput(collection=[rng.randrange(self.low, self.high) for _ in range(self.size)])


NODES: list[type[BaseInvocation]] = [RangeInvocation, RangeOfSizeInvocation, RandomRangeInvocation]

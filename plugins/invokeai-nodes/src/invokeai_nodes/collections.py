"""Collections of numbers."""

from __future__ import annotations

import random

from invokeai_core import BaseInvocation, InputField, InvocationContext, invocation
from invokeai_nodes.primitives import IntegerCollectionOutput


@invocation("range", title="Integer Range", tags=["collection", "range"], category="collections", version="1.0.0")
class RangeInvocation(BaseInvocation):
    """Integers from start (inclusive) to stop (exclusive) by step, like Python's range."""

    start: int = InputField(default=0, description="The first value")
    stop: int = InputField(default=10, description="The end (exclusive)")
    step: int = InputField(default=1, description="The step (not zero)")

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        if self.step == 0:
            raise ValueError("range: 'step' must not be zero")
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

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
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

    def invoke(self, context: InvocationContext) -> IntegerCollectionOutput:
        if self.high <= self.low:
            raise ValueError(f"random_range: high ({self.high}) must be greater than low ({self.low})")
        rng = random.Random(self.seed)
        return IntegerCollectionOutput(collection=[rng.randrange(self.low, self.high) for _ in range(self.size)])


NODES: list[type[BaseInvocation]] = [RangeInvocation, RangeOfSizeInvocation, RandomRangeInvocation]

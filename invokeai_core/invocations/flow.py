"""The two flow nodes of the kernel: `iterate` and `collect`.

`iterate` runs everything downstream of its `item` output once per element of its `collection`;
`collect` gathers the values that reach its `item` input back into a list (after the items of its
optional `collection` input). The executor in `invokeai_core.session` gives them their meaning; their
`invoke` methods only shape the values the executor prepared.
"""

from __future__ import annotations

from typing import Any

from invokeai_core.context import InvocationContext
from invokeai_core.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from invokeai_core.invocations.fields import Input, InputField, OutputField

ITERATE = "iterate"
COLLECT = "collect"


@invocation_output("iterate_output")
class IterateInvocationOutput(BaseInvocationOutput):
    """One element of an iterated collection."""

    item: Any = OutputField(description="The current item")
    index: int = OutputField(description="The index of the current item (0-based)")
    total: int = OutputField(description="The number of items in the collection")


@invocation(ITERATE, title="Iterate", tags=["flow", "collection"], category="flow", version="1.0.0", use_cache=False)
class IterateInvocation(BaseInvocation):
    """Runs the nodes downstream of `item` once per element of `collection`, in order."""

    collection: list[Any] = InputField(default=[], description="The collection to iterate over")
    index: int = InputField(
        default=0,
        description="The element this copy produces (set by the executor)",
        input=Input.Direct,
        ui_hidden=True,
    )

    def invoke(self, context: InvocationContext) -> IterateInvocationOutput:
        return IterateInvocationOutput(item=self.collection[self.index], index=self.index, total=len(self.collection))


@invocation_output("collect_output")
class CollectInvocationOutput(BaseInvocationOutput):
    """The gathered collection."""

    collection: list[Any] = OutputField(description="The collection of gathered items")


@invocation(COLLECT, title="Collect", tags=["flow", "collection"], category="flow", version="1.0.0", use_cache=False)
class CollectInvocation(BaseInvocation):
    """Gathers every value that reaches `item` into a list, after the items of `collection`."""

    item: Any = InputField(
        default=None, description="An item to gather (may be connected many times)", input=Input.Connection
    )
    collection: list[Any] = InputField(default=[], description="Items placed before the gathered ones")

    def invoke(self, context: InvocationContext) -> CollectInvocationOutput:
        return CollectInvocationOutput(collection=list(self.collection))

"""How much work one node of this pack may do: the kernel's `[limits]` table (`invokeai_core.config`).

Every node whose output size is chosen by its inputs checks them against these limits *before* the
work. Values typed into the graph are checked when the graph is built (from `check_when_built`, so
the graph is refused naming the node and field); values that arrive through edges are checked when
the node runs, and fail it with the same message. The check reads the configuration of the node's
Invoker at run time, and when a graph is built the configuration of the host whose registry parses
it (pydantic's validation context).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_nodes.validation import InvalidInputError, building_config

if TYPE_CHECKING:
    from invokeai_core import InvocationContext, LimitsConfig


def limits(context: InvocationContext | None = None) -> LimitsConfig:
    """The limits in force: the running node's configuration, else that of the graph being built
    (pydantic's validation context, see `check_when_built`), else the defaults."""
    if context is not None:
        return context.config.limits
    config = building_config.get()
    if config is not None:
        return config.limits
    from invokeai_core import LimitsConfig

    return LimitsConfig()


def check_items(node: str, field: str, count: int, context: InvocationContext | None = None) -> None:
    """Refuse a collection of `count` items past `limits.collection_items`."""
    limit = limits(context).collection_items
    if count > limit:
        raise InvalidInputError(
            node, field, f"the result would have {count} items, more than limits.collection_items ({limit})"
        )


def check_length(node: str, field: str, length: int, context: InvocationContext | None = None) -> None:
    """Refuse a string of `length` characters past `limits.string_length`."""
    limit = limits(context).string_length
    if length > limit:
        raise InvalidInputError(
            node, field, f"the string would have {length} characters, more than limits.string_length ({limit})"
        )


def check_bits(node: str, field: str, bits: int, context: InvocationContext | None = None) -> None:
    """Refuse an integer result of about `bits` bits past `limits.integer_bits`."""
    limit = limits(context).integer_bits
    if bits > limit:
        raise InvalidInputError(
            node, field, f"the result would have about {bits} bits, more than limits.integer_bits ({limit})"
        )


def check_pixels(node: str, field: str, width: int, height: int, context: InvocationContext | None = None) -> None:
    """Refuse an image of `width` x `height` past `limits.image_pixels`."""
    limit = limits(context).image_pixels
    if width * height > limit:
        raise InvalidInputError(
            node,
            field,
            f"the image would be {width}x{height} = {width * height} pixels, more than limits.image_pixels ({limit})",
        )

"""How the nodes of this pack refuse bad input: early and naming the field.

* A limit on one field is declared on the field (`ge=`, `Literal[...]`, or an annotated type such as
  `NonZeroInt`); the graph refuses a bad value before anything runs, and the executor checks a value
  that arrives through an edge against the same type.
* A rule relating two fields is a method that raises `InvalidInputError`. The node calls it from a
  model validator (`check_when_built`), so a bad combination of values typed into the graph is
  refused when the graph is built, naming the field to change; and calls it again in `invoke()`,
  because values that arrive through edges are only known then.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

#: The configuration of the graph being built (pydantic's validation context), while a
#: `check_when_built` check runs: the limits those checks compare against.
building_config: contextvars.ContextVar[Any] = contextvars.ContextVar("building_config", default=None)


class InvalidInputError(ValueError):
    """An input value (or combination of values) that the node cannot use."""

    def __init__(self, node: str, field: str, reason: str) -> None:
        self.node = node
        self.field = field
        self.reason = reason
        super().__init__(f"{node}: input '{field}': {reason}")


def check_when_built(model: BaseModel, info: ValidationInfo, check: Callable[[], Any], needs: tuple[str, ...]) -> None:
    """Run `check` while a node is validated, turning an `InvalidInputError` into a pydantic error
    located at its field (so the graph reports "node 'n', field 'high': ...").

    `info` is the validator's `ValidationInfo`: the graph passes the configuration it is built under
    as pydantic's validation context, and the check reads its limits from there.

    Skipped unless every field in `needs` was given a value: a field left at its default may be fed
    by an edge that is added after the node, and its default must not get the node refused.
    """
    if not set(needs) <= model.model_fields_set:
        return
    config = (info.context or {}).get("config") if isinstance(info.context, dict) else None
    token = building_config.set(config)
    try:
        check()
    except InvalidInputError as e:
        error = InitErrorDetails(
            type=PydanticCustomError("invalid_input", e.reason), loc=(e.field,), input=getattr(model, e.field, None)
        )
        raise ValidationError.from_exception_data(type(model).__name__, [error]) from None
    finally:
        building_config.reset(token)


def _not_zero(value: int) -> int:
    if value == 0:
        raise PydanticCustomError("not_zero", "must not be zero")
    return value


#: An integer other than 0 (a step).
NonZeroInt = Annotated[int, AfterValidator(_not_zero)]

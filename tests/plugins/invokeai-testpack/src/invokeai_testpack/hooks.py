"""Hook module: light on purpose; node modules are imported inside the hook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from invokeai_core import hookimpl


@hookimpl
def register_invocations(register: Callable[[Any], None]) -> None:
    from invokeai_testpack import nodes

    for cls in (
        nodes.TpConstInvocation,
        nodes.TpScaleInvocation,
        nodes.TpSleepInvocation,
        nodes.TpFailInvocation,
        nodes.TpTallyInvocation,
        nodes.TpGradientInvocation,
    ):
        register(cls)

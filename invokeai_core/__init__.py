"""invokeai-core: a node-graph engine for image generation, as a minimal kernel plus plugins.

The plugin-author API is everything in `__all__`. Attributes are imported on first access so that
`import invokeai_core` costs almost nothing (the CLI's `--help` and plugin hook modules rely on it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from invokeai_core.hookspecs import hookimpl
from invokeai_core.version import __version__

if TYPE_CHECKING:
    from invokeai_core.batch import Batch, BatchDatum
    from invokeai_core.config import InvokeAIConfig, load_config
    from invokeai_core.context import InvocationContext
    from invokeai_core.graph import Edge, EdgeConnection, Graph
    from invokeai_core.invocations.baseinvocation import (
        BaseInvocation,
        BaseInvocationOutput,
        invocation,
        invocation_output,
    )
    from invokeai_core.invocations.fields import ImageField, Input, InputField, OutputField
    from invokeai_core.invoker import Invoker
    from invokeai_core.session import Session

__all__ = [
    "BaseInvocation",
    "BaseInvocationOutput",
    "Batch",
    "BatchDatum",
    "Edge",
    "EdgeConnection",
    "Graph",
    "ImageField",
    "Input",
    "InputField",
    "InvocationContext",
    "InvokeAIConfig",
    "Invoker",
    "OutputField",
    "Session",
    "__version__",
    "hookimpl",
    "invocation",
    "invocation_output",
    "load_config",
]

_LAZY: dict[str, str] = {
    "BaseInvocation": "invokeai_core.invocations.baseinvocation",
    "BaseInvocationOutput": "invokeai_core.invocations.baseinvocation",
    "invocation": "invokeai_core.invocations.baseinvocation",
    "invocation_output": "invokeai_core.invocations.baseinvocation",
    "InputField": "invokeai_core.invocations.fields",
    "OutputField": "invokeai_core.invocations.fields",
    "ImageField": "invokeai_core.invocations.fields",
    "Input": "invokeai_core.invocations.fields",
    "InvocationContext": "invokeai_core.context",
    "Graph": "invokeai_core.graph",
    "Edge": "invokeai_core.graph",
    "EdgeConnection": "invokeai_core.graph",
    "Session": "invokeai_core.session",
    "Batch": "invokeai_core.batch",
    "BatchDatum": "invokeai_core.batch",
    "Invoker": "invokeai_core.invoker",
    "InvokeAIConfig": "invokeai_core.config",
    "load_config": "invokeai_core.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'invokeai_core' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

"""invokeai-core: a node-graph engine for image generation, as a minimal kernel plus plugins.

The plugin-author API is everything in `__all__`: nodes, hooks, the Invoker, graphs and sessions,
events, errors, and the service ABCs and models a store implements. A plugin imports only from
here (tests may also use `invokeai_core.testing` and `invokeai_core.testing.contracts`); every other
module is the kernel's own and may change (docs/plugins.md, "The plugin-author surface").

Attributes are imported on first access so that `import invokeai_core` costs almost nothing (the
CLI's `--help` and plugin hook modules rely on it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from invokeai_core.hookspecs import hookimpl
from invokeai_core.version import __version__

if TYPE_CHECKING:
    from invokeai_core.batch import Batch, BatchDatum
    from invokeai_core.cli.state import CliError, CliState, pass_state
    from invokeai_core.config import InvokeAIConfig, LimitsConfig, load_config
    from invokeai_core.context import InvocationContext
    from invokeai_core.errors import (
        BatchError,
        ConfigError,
        CycleError,
        DuplicateNodeError,
        DuplicateRegistrationError,
        EdgeError,
        GraphError,
        InvalidTextError,
        InvocationDefinitionError,
        InvokeAIError,
        IterateCollectError,
        MissingInputError,
        MissingPluginError,
        NodeFieldError,
        NodeNotFoundError,
        PluginError,
        RegistryError,
        ServiceUnavailableError,
        SessionError,
        SessionNotFoundError,
        StorageError,
        StorageUnavailableError,
        TypeMismatchError,
        UnknownNodeTypeError,
        check_text,
        find_invalid_text,
    )
    from invokeai_core.events import (
        ALL_EVENTS,
        BatchEnqueuedEvent,
        EventBase,
        EventServiceBase,
        Handler,
        InProcessEventBus,
        InvocationCompleteEvent,
        InvocationErrorEvent,
        InvocationProgressEvent,
        InvocationStartedEvent,
        ModelLoadCompleteEvent,
        ModelLoadStartedEvent,
        ProgressImage,
        QueueItemStatusChangedEvent,
        SessionCanceledEvent,
        SessionCompleteEvent,
        SessionStartedEvent,
    )
    from invokeai_core.graph import Edge, EdgeConnection, Graph, node_json
    from invokeai_core.hookspecs import NodeMigrationRegistrar, ServiceRegistrar, hookspec
    from invokeai_core.invocations.baseinvocation import (
        BaseInvocation,
        BaseInvocationOutput,
        invocation,
        invocation_output,
    )
    from invokeai_core.invocations.fields import ImageField, Input, InputField, OutputField
    from invokeai_core.invoker import Invoker
    from invokeai_core.plugins.host import PluginHost, PluginInfo
    from invokeai_core.registry import NodeRegistry
    from invokeai_core.runtime import ServiceRuntime
    from invokeai_core.services.base import (
        DEFAULT_QUEUE_ID,
        FINISHED,
        QUEUE_ID_RE,
        QUEUE_STATUSES,
        BatchNotFoundError,
        EnqueueResult,
        ExpandedItem,
        ImageFileStorageBase,
        ImageRecord,
        ImageRecordStorageBase,
        InvalidQueueIdError,
        ObjectStorageBase,
        OutputCacheBase,
        Page,
        QueueError,
        QueueFullError,
        QueueItem,
        QueueItemNotFoundError,
        QueueStatus,
        QueueStatusCounts,
        SessionQueueBase,
        SessionStorageBase,
        SessionSummary,
        check_item_ids,
        check_queue_id,
        prepend_priority,
        utcnow,
    )
    from invokeai_core.services.container import Services
    from invokeai_core.session import NodeError, Session, parse_prepared_id, prepared_id

#: Each public name and the module it lives in, imported when the name is first used.
_PUBLIC: dict[str, tuple[str, ...]] = {
    # writing nodes
    "invokeai_core.invocations.baseinvocation": (
        "BaseInvocation",
        "BaseInvocationOutput",
        "invocation",
        "invocation_output",
    ),
    "invokeai_core.invocations.fields": ("ImageField", "Input", "InputField", "OutputField"),
    "invokeai_core.context": ("InvocationContext",),
    # hooks and plugins
    "invokeai_core.hookspecs": ("NodeMigrationRegistrar", "ServiceRegistrar", "hookspec"),
    "invokeai_core.plugins.host": ("PluginHost", "PluginInfo"),
    "invokeai_core.registry": ("NodeRegistry",),
    "invokeai_core.cli.state": ("CliError", "CliState", "pass_state"),
    # running graphs
    "invokeai_core.config": ("InvokeAIConfig", "LimitsConfig", "load_config"),
    "invokeai_core.invoker": ("Invoker",),
    "invokeai_core.graph": ("Edge", "EdgeConnection", "Graph", "node_json"),
    "invokeai_core.session": ("NodeError", "Session", "parse_prepared_id", "prepared_id"),
    "invokeai_core.batch": ("Batch", "BatchDatum"),
    # services: what a store implements and is built with
    "invokeai_core.runtime": ("ServiceRuntime",),
    "invokeai_core.services.container": ("Services",),
    "invokeai_core.services.base": (
        "DEFAULT_QUEUE_ID",
        "FINISHED",
        "QUEUE_ID_RE",
        "QUEUE_STATUSES",
        "BatchNotFoundError",
        "EnqueueResult",
        "ExpandedItem",
        "ImageFileStorageBase",
        "ImageRecord",
        "ImageRecordStorageBase",
        "InvalidQueueIdError",
        "ObjectStorageBase",
        "OutputCacheBase",
        "Page",
        "QueueError",
        "QueueFullError",
        "QueueItem",
        "QueueItemNotFoundError",
        "QueueStatus",
        "QueueStatusCounts",
        "SessionQueueBase",
        "SessionStorageBase",
        "SessionSummary",
        "check_item_ids",
        "check_queue_id",
        "prepend_priority",
        "utcnow",
    ),
    "invokeai_core.events": (
        "ALL_EVENTS",
        "BatchEnqueuedEvent",
        "EventBase",
        "EventServiceBase",
        "Handler",
        "InProcessEventBus",
        "InvocationCompleteEvent",
        "InvocationErrorEvent",
        "InvocationProgressEvent",
        "InvocationStartedEvent",
        "ModelLoadCompleteEvent",
        "ModelLoadStartedEvent",
        "ProgressImage",
        "QueueItemStatusChangedEvent",
        "SessionCanceledEvent",
        "SessionCompleteEvent",
        "SessionStartedEvent",
    ),
    "invokeai_core.errors": (
        "BatchError",
        "ConfigError",
        "CycleError",
        "DuplicateNodeError",
        "DuplicateRegistrationError",
        "EdgeError",
        "GraphError",
        "InvalidTextError",
        "InvocationDefinitionError",
        "InvokeAIError",
        "IterateCollectError",
        "MissingInputError",
        "MissingPluginError",
        "NodeFieldError",
        "NodeNotFoundError",
        "PluginError",
        "RegistryError",
        "ServiceUnavailableError",
        "SessionError",
        "SessionNotFoundError",
        "StorageError",
        "StorageUnavailableError",
        "TypeMismatchError",
        "UnknownNodeTypeError",
        "check_text",
        "find_invalid_text",
    ),
}

_LAZY: dict[str, str] = {name: module for module, names in _PUBLIC.items() for name in names}

#: Everything above plus the two names imported eagerly (a test checks the two lists agree).
__all__ = [
    "ALL_EVENTS",
    "DEFAULT_QUEUE_ID",
    "FINISHED",
    "QUEUE_ID_RE",
    "QUEUE_STATUSES",
    "BaseInvocation",
    "BaseInvocationOutput",
    "Batch",
    "BatchDatum",
    "BatchEnqueuedEvent",
    "BatchError",
    "BatchNotFoundError",
    "CliError",
    "CliState",
    "ConfigError",
    "CycleError",
    "DuplicateNodeError",
    "DuplicateRegistrationError",
    "Edge",
    "EdgeConnection",
    "EdgeError",
    "EnqueueResult",
    "EventBase",
    "EventServiceBase",
    "ExpandedItem",
    "Graph",
    "GraphError",
    "Handler",
    "ImageField",
    "ImageFileStorageBase",
    "ImageRecord",
    "ImageRecordStorageBase",
    "InProcessEventBus",
    "Input",
    "InputField",
    "InvalidQueueIdError",
    "InvalidTextError",
    "InvocationCompleteEvent",
    "InvocationContext",
    "InvocationDefinitionError",
    "InvocationErrorEvent",
    "InvocationProgressEvent",
    "InvocationStartedEvent",
    "InvokeAIConfig",
    "InvokeAIError",
    "Invoker",
    "IterateCollectError",
    "LimitsConfig",
    "MissingInputError",
    "MissingPluginError",
    "ModelLoadCompleteEvent",
    "ModelLoadStartedEvent",
    "NodeError",
    "NodeFieldError",
    "NodeMigrationRegistrar",
    "NodeNotFoundError",
    "NodeRegistry",
    "ObjectStorageBase",
    "OutputCacheBase",
    "OutputField",
    "Page",
    "PluginError",
    "PluginHost",
    "PluginInfo",
    "ProgressImage",
    "QueueError",
    "QueueFullError",
    "QueueItem",
    "QueueItemNotFoundError",
    "QueueItemStatusChangedEvent",
    "QueueStatus",
    "QueueStatusCounts",
    "RegistryError",
    "ServiceRegistrar",
    "ServiceRuntime",
    "ServiceUnavailableError",
    "Services",
    "Session",
    "SessionCanceledEvent",
    "SessionCompleteEvent",
    "SessionError",
    "SessionNotFoundError",
    "SessionQueueBase",
    "SessionStartedEvent",
    "SessionStorageBase",
    "SessionSummary",
    "StorageError",
    "StorageUnavailableError",
    "TypeMismatchError",
    "UnknownNodeTypeError",
    "__version__",
    "check_item_ids",
    "check_queue_id",
    "check_text",
    "find_invalid_text",
    "hookimpl",
    "hookspec",
    "invocation",
    "invocation_output",
    "load_config",
    "node_json",
    "parse_prepared_id",
    "pass_state",
    "prepared_id",
    "prepend_priority",
    "utcnow",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'invokeai_core' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

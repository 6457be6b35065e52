"""invokeai-temporal: the session queue dispatched through Temporal to `invokeai worker` processes.

Light to import: the Temporal SDK is imported only by the modules that talk to Temporal
(`client`, `queue`, `workflow`, `worker`), which the kernel imports only when the configuration
selects `services.queue = "temporal"` or `invokeai worker` runs.
"""

__version__ = "0.1.0"

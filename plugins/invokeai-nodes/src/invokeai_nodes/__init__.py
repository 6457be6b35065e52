"""invokeai-nodes: the standard node pack for invokeai-core."""

__version__ = "0.1.0"

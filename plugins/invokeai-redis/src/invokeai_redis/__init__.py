"""invokeai-redis: the `events` service on Redis, so every process sees every session's events."""

__version__ = "0.1.0"

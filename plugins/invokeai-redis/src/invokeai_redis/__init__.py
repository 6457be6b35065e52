"""invokeai-redis: the `events` service on Redis, so every process sees every session's events."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-redis")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

"""invokeai-nodes: the standard node pack for invokeai-core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-nodes")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

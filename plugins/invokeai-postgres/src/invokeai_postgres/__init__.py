"""invokeai-postgres: sessions, image records and the session queue on PostgreSQL."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-postgres")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

"""invokeai-web: the HTTP API (FastAPI) and live events (Socket.IO) of invokeai-core.

`invokeai serve` runs it. Importing this package is cheap: FastAPI, Socket.IO and uvicorn are imported
only by the modules that build and run the app (`invokeai_web.app` and what it imports).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-web")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

#: Every route lives under this prefix.
API_PREFIX = "/api/v1"

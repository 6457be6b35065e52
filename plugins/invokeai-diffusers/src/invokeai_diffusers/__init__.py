"""invokeai-diffusers: models, a model cache and Stable Diffusion nodes for invokeai-core."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-diffusers")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

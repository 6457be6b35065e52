"""invokeai-diffusers: models, a model cache and Stable Diffusion nodes for invokeai-core."""

import logging
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("invokeai-diffusers")  # pyproject.toml is the one place the version is written
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"


class _NoTorchvisionFallbackWarning(logging.Filter):
    """transformers warns, once per class, that `CLIPImageProcessor` (and `SiglipImageProcessor`)
    "requires torchvision (not installed); falling back to ...Pil" when diffusers' pipelines import
    them. It is harmless here: torchvision is deliberately not installed (no PyPI build imports beside
    the pinned torch) and no node uses an image processor. Only that record of that logger is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "requires torchvision (not installed); falling back to" not in record.getMessage()


# A filter on the logger that raises it (`transformers.utils.import_utils`, a plain stdlib logger):
# nothing else of transformers' logging changes, and transformers is not imported here.
logging.getLogger("transformers.utils.import_utils").addFilter(_NoTorchvisionFallbackWarning())

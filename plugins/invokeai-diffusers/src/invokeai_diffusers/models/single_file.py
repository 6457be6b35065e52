"""Loading components of single-file `.safetensors` checkpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from invokeai_diffusers.models.cache import ModelLoadError

if TYPE_CHECKING:
    from invokeai_diffusers.models.cache import ModelCache
    from invokeai_diffusers.models.records import ModelRecord


def load_single_file_component(cache: ModelCache, record: ModelRecord, submodel: str) -> Any:
    raise ModelLoadError(f"model '{record.name}': single-file loading is not available yet")

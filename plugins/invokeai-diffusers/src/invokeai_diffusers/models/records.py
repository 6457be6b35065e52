"""Installed-model records, kept in `<root>/models/models.json` (written atomically)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from invokeai_core import utcnow

BaseType = Literal["sd-1", "sd-2", "sdxl", "sd-3", "flux", "any"]  # any: upscalers (no base model)
ModelFormat = Literal["diffusers", "checkpoint", "lora", "embedding", "spandrel", "ip_adapter"]
ModelType = Literal["main", "lora", "embedding", "upscaler", "ip_adapter", "controlnet", "t2i_adapter"]
ModelVariant = Literal["normal", "inpaint", "dev", "schnell"]
PredictionType = Literal["epsilon", "v_prediction"]


class ModelRecord(BaseModel):
    """What the model manager knows about one installed model."""

    name: str = Field(description="The name nodes and the CLI use")
    base: BaseType = Field(description="sd-1, sd-2, sdxl, sd-3 (SD3.5) or flux (FLUX.1)")
    type: ModelType = Field(
        default="main",
        description="main (a whole model), lora (an adapter file), embedding (textual inversion), upscaler, "
        "ip_adapter, controlnet or t2i_adapter",
    )
    variant: ModelVariant = "normal"
    format: ModelFormat
    path: str = Field(description="Absolute path to the folder or file")
    hash: str = Field(description="blake2b of the model's files")
    size: int = Field(description="Bytes on disk")
    config: str | None = Field(
        default=None, description="Checkpoints: the diffusers config folder to load it with (default: the shipped one)"
    )
    prediction_type: PredictionType | None = Field(
        default=None, description="Overrides the scheduler config's prediction type (e.g. v_prediction for SD 2.x 768)"
    )
    added_at: str = Field(default_factory=utcnow)
    description: str = ""


class ModelRecordStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, ModelRecord]:
        if not self.path.exists():
            return {}
        data = json.loads(self.path.read_text(encoding="utf-8"))
        return {name: ModelRecord.model_validate(raw) for name, raw in data.get("models", {}).items()}

    def _write(self, records: dict[str, ModelRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        body = {"version": 1, "models": {n: r.model_dump(mode="json") for n, r in sorted(records.items())}}
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        os.replace(tmp, self.path)

    def all(self) -> list[ModelRecord]:
        with self._lock:
            return list(self._read().values())

    def get(self, name: str) -> ModelRecord | None:
        with self._lock:
            return self._read().get(name)

    def put(self, record: ModelRecord) -> None:
        with self._lock:
            records = self._read()
            records[record.name] = record
            self._write(records)

    def delete(self, name: str) -> bool:
        with self._lock:
            records = self._read()
            found = records.pop(name, None) is not None
            if found:
                self._write(records)
            return found

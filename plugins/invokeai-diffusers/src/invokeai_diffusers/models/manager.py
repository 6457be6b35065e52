"""The `models` service: install, list, remove and load models (kind `models`, name `local`).

Models are installed from a local diffusers folder (single-file checkpoints are probed and refused),
probed for their base and variant, and recorded with name, base, path, hash and size. Nothing is
ever downloaded. Loading goes through the `ModelCache`, which keeps components across sessions.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core.errors import InvokeAIError
from invokeai_diffusers.models.cache import LoadListener, ModelCache
from invokeai_diffusers.models.probe import PICKLE_SUFFIXES, ModelProbeError, hash_and_size, probe
from invokeai_diffusers.models.records import ModelRecord, ModelRecordStore
from invokeai_diffusers.settings import DiffusersSettings, load_settings

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnknownModelError(InvokeAIError):
    """No installed model has that name."""


class ModelInstallError(InvokeAIError):
    """A model cannot be installed (the message says why)."""


class ModelManager:
    """Installed models and their loaded components."""

    def __init__(self, config: InvokeAIConfig | None = None, *, settings: DiffusersSettings | None = None) -> None:
        self.config = config
        self.settings = settings if settings is not None else load_settings(config)
        root = config.root if config is not None else Path.cwd()
        self.models_dir = self.settings.models_dir or (Path(root) / "models")
        self.records = ModelRecordStore(self.models_dir / "models.json")
        self._cache: ModelCache | None = None

    @property
    def cache(self) -> ModelCache:
        if self._cache is None:
            self._cache = ModelCache(self.settings)
        return self._cache

    # -- records --------------------------------------------------------------------------------
    def list(self) -> list[ModelRecord]:
        return sorted(self.records.all(), key=lambda r: r.name)

    def get(self, name: str) -> ModelRecord:
        record = self.records.get(name)
        if record is None:
            known = ", ".join(r.name for r in self.list()) or "none installed"
            raise UnknownModelError(
                f"unknown model '{name}' (installed: {known}); see `invokeai models list`, "
                "`invokeai models add PATH` or `invokeai models create-demo`"
            )
        return record

    def add(self, path: str | Path, *, name: str | None = None, description: str = "") -> ModelRecord:
        """Install a model from a local folder or file (recorded in place, never copied)."""
        source = Path(path).expanduser().resolve()
        if not source.exists():
            raise ModelInstallError(f"{source}: no such file or folder")
        if source.is_file() and source.suffix.lower() in PICKLE_SUFFIXES and not self.settings.allow_pickle:
            raise ModelInstallError(
                f"{source}: '{source.suffix}' checkpoints are Python pickles, which can run arbitrary code when "
                "loaded; convert it to .safetensors, or set plugins.diffusers.allow_pickle = true if you trust it"
            )
        try:
            found = probe(source)
        except ModelProbeError as e:
            raise ModelInstallError(str(e)) from None
        if found.format != "diffusers":
            raise ModelInstallError(
                f"{source}: a single-file {found.base} checkpoint; loading single files is not supported yet. "
                "Convert it to a diffusers folder (diffusers' `from_single_file(...).save_pretrained(DIR)`) "
                "and add that folder"
            )
        model_name = name or (source.stem if source.is_file() else source.name)
        if not NAME.match(model_name):
            raise ModelInstallError(f"'{model_name}' is not a valid model name (letters, digits, '.', '_', '-')")
        if self.records.get(model_name) is not None:
            raise ModelInstallError(f"a model named '{model_name}' is already installed (remove it or pass --name)")
        digest, size = hash_and_size(source)
        record = ModelRecord(
            name=model_name,
            base=found.base,
            variant=found.variant,
            format=found.format,
            path=str(source),
            hash=digest,
            size=size,
            description=description,
        )
        self.records.put(record)
        return record

    def remove(self, name: str, *, delete_files: bool = False) -> ModelRecord:
        record = self.get(name)
        self.records.delete(name)
        self.cache.drop(name)
        if delete_files:
            target = Path(record.path)
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        return record

    def create_demo(self, *, sdxl: bool = False, name: str | None = None) -> ModelRecord:
        """Build a small random-weight model offline, save it under the models folder, install it."""
        from invokeai_diffusers.models.demo import DEMO_NOTE, build_sd, build_sdxl

        model_name = name or ("demo-sdxl" if sdxl else "demo-sd")
        existing = self.records.get(model_name)
        if existing is not None:
            return existing
        target = self.models_dir / model_name
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        (build_sdxl if sdxl else build_sd)(target)
        return self.add(target, name=model_name, description=DEMO_NOTE)

    # -- loading --------------------------------------------------------------------------------
    def load(self, name: str, submodel: str, *, on_load: LoadListener | None = None) -> Any:
        """A loaded component (`unet`, `vae`, `text_encoder`, `tokenizer`, `scheduler`, ...)."""
        record = self.get(name)
        if not Path(record.path).exists():
            raise ModelInstallError(
                f"model '{name}': its files are gone ({record.path}); reinstall it or `invokeai models remove {name}`"
            )
        return self.cache.get(record, submodel, on_load=on_load)

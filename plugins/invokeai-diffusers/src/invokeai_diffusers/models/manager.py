"""The `models` service: install, list, remove and load models (kind `models`, name `local`).

Models are installed from a local diffusers folder or a single-file checkpoint, probed for their
base and variant, and recorded with name, base, path, hash and size. Nothing is ever downloaded:
checkpoints load with the config folders this plugin ships (see `single_file`). Loading goes
through the `ModelCache`, which keeps components across sessions.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from invokeai_core import InvokeAIError
from invokeai_diffusers.models.cache import LoadListener, ModelCache
from invokeai_diffusers.models.probe import ModelProbeError, ProbeResult, hash_and_size, probe
from invokeai_diffusers.models.records import ModelRecord, ModelRecordStore, ModelType, PredictionType
from invokeai_diffusers.models.single_file import CheckpointError, config_folder
from invokeai_diffusers.settings import DiffusersSettings, load_settings

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: how messages name each model type
KIND_NAMES: dict[str, str] = {
    "main": "main model",
    "lora": "LoRA",
    "embedding": "textual inversion embedding",
    "upscaler": "upscaler",
    "ip_adapter": "IP-Adapter",
    "controlnet": "ControlNet",
    "t2i_adapter": "T2I-Adapter",
}


class UnknownModelError(InvokeAIError):
    """No installed model has that name."""


class ModelInstallError(InvokeAIError):
    """A model cannot be installed (the message says why)."""


def _resolved(path: str | Path) -> Path:
    """`path` with `~` expanded, made absolute; a `~user` that does not exist is a ModelInstallError."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError as e:  # "Could not determine home directory", a symlink loop
        raise ModelInstallError(f"{str(path)[:200]!r}: {e}") from None


class ModelManager:
    """Installed models and their loaded components."""

    def __init__(self, config: InvokeAIConfig | None = None, *, settings: DiffusersSettings | None = None) -> None:
        self.config = config
        self.settings = settings if settings is not None else load_settings(config)
        root = config.root if config is not None else Path.cwd()
        self.models_dir = self.settings.models_dir or (Path(root) / "models")
        self.records = ModelRecordStore(self.models_dir / "models.json")
        self._cache: ModelCache | None = None

    def api_folders(self) -> list[Path]:
        """The folders the HTTP API may install models from: models_dir and `api_model_folders`."""
        root = Path(self.config.root) if self.config is not None else Path.cwd()
        return [p.resolve() for p in (self.models_dir, *(root / f for f in self.settings.api_model_folders))]

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
            import difflib

            names = [r.name for r in self.list()]
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UnknownModelError(
                f"unknown model '{name}' ({hint}installed: {', '.join(names) or 'none'}); see `invokeai models "
                "list`, `invokeai models add PATH` or `invokeai models create-demo`"
            )
        return record

    def add(
        self,
        path: str | Path,
        *,
        name: str | None = None,
        description: str = "",
        config: str | Path | None = None,
        prediction_type: PredictionType | None = None,
    ) -> ModelRecord:
        """Install a model from a local folder or checkpoint file (recorded in place, never copied).

        `config` is a diffusers folder (configs only, no weights needed) for a checkpoint whose shapes
        differ from the shipped config of its base; `prediction_type` overrides the scheduler's.
        """
        source = _resolved(path)
        if not source.exists():
            raise ModelInstallError(f"{source}: no such file or folder")
        try:
            found = probe(source, allow_pickle=self.settings.allow_pickle)
        except ModelProbeError as e:
            raise ModelInstallError(str(e)) from None
        config_dir: str | None = None
        if found.type in ("controlnet", "t2i_adapter"):
            return self._add_control(source, found, name, description, config, prediction_type)
        if config is not None:
            if found.format != "checkpoint":
                raise ModelInstallError(f"{source}: --config is for single-file checkpoints; a folder has its own")
            config_path = _resolved(config)
            if not (config_path / "model_index.json").is_file():
                raise ModelInstallError(f"--config {config_path}: not a diffusers config folder (no model_index.json)")
            config_dir = str(config_path)
        if found.type != "main" and (config is not None or prediction_type is not None):
            raise ModelInstallError(f"{source}: a {KIND_NAMES[found.type]} takes no --config or --prediction-type")
        if found.format == "checkpoint" and found.base in ("flux", "sd-3"):
            from invokeai_diffusers.models.single_file import check_flow_config

            try:
                check_flow_config(source, found.base, found.variant, Path(config_dir) if config_dir else None)
            except CheckpointError as e:
                raise ModelInstallError(str(e)) from None
        elif found.format == "checkpoint":
            folder = Path(config_dir) if config_dir else self._shipped_folder(found, prediction_type)
            self._check_fits(source, found, folder)
        model_name = name or (source.stem if source.is_file() else source.name)
        self._check_new_name(model_name)
        digest, size = hash_and_size(source)
        record = ModelRecord(
            name=model_name,
            type=cast(ModelType, found.type),
            base=found.base,
            variant=found.variant,
            format=found.format,
            path=str(source),
            hash=digest,
            size=size,
            description=description,
            config=config_dir,
            prediction_type=prediction_type,
        )
        self.records.put(record)
        return record

    def _check_new_name(self, model_name: str) -> None:
        if not NAME.match(model_name):
            raise ModelInstallError(f"'{model_name}' is not a valid model name (letters, digits, '.', '_', '-')")
        if self.records.get(model_name) is not None:
            raise ModelInstallError(f"a model named '{model_name}' is already installed (remove it or pass --name)")

    def _add_control(
        self,
        source: Path,
        found: ProbeResult,
        name: str | None,
        description: str,
        config: str | Path | None,
        prediction_type: PredictionType | None,
    ) -> ModelRecord:
        """A ControlNet or T2I-Adapter: a diffusers folder, or a ControlNet single file with `config`
        (its diffusers config folder; see `control_probe`)."""
        from invokeai_diffusers.models.control_probe import check_control_config

        if prediction_type is not None:
            raise ModelInstallError(f"{source}: a {found.type} takes no --prediction-type")
        config_dir: str | None = None
        if found.format == "diffusers" and config is not None:
            raise ModelInstallError(f"{source}: --config is for single-file checkpoints; a folder has its own")
        if found.format == "checkpoint":
            config_path = _resolved(config) if config is not None else None
            try:
                check_control_config(source, found, config_path)
            except ModelProbeError as e:
                raise ModelInstallError(str(e)) from None
            config_dir = str(config_path)
        model_name = name or (source.stem if source.is_file() else source.name)
        self._check_new_name(model_name)
        digest, size = hash_and_size(source)
        record = ModelRecord(
            name=model_name,
            type="controlnet" if found.type == "controlnet" else "t2i_adapter",
            base=found.base,
            format=found.format,
            path=str(source),
            hash=digest,
            size=size,
            description=description,
            config=config_dir,
        )
        self.records.put(record)
        return record

    @staticmethod
    def _check_fits(source: Path, found: ProbeResult, config: Path) -> None:
        """Refuse a checkpoint whose UNet shapes its config folder cannot hold, before anything loads."""
        import json

        try:
            unet = json.loads((config / "unet" / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelInstallError(f"{config}: cannot read unet/config.json ({e})") from None
        want_cross = unet.get("cross_attention_dim")
        want_in = unet.get("in_channels", 4)
        if found.cross_attention_dim not in (None, want_cross) or found.in_channels != want_in:
            raise ModelInstallError(
                f"{source}: its UNet takes {found.in_channels} input channels and text {found.cross_attention_dim} "
                f"wide, but the config {config} has {want_in} and {want_cross}. For a {found.base} checkpoint of "
                "another size, pass --config DIR: a diffusers folder of the same architecture (its configs are enough)"
            )

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
    def source_folder(self, record: ModelRecord) -> Path:
        """Where a model's component configs live: its own folder, or the config for a checkpoint."""
        if record.format == "diffusers":
            return Path(record.path)
        if record.type in ("controlnet", "t2i_adapter"):
            return Path(record.config or record.path)
        if record.config:
            return Path(record.config)
        return self._shipped_folder(record, record.prediction_type)

    def _shipped_folder(self, found: ProbeResult | ModelRecord, prediction_type: str | None) -> Path:
        try:
            return config_folder(self.models_dir / ".configs", found.base, found.variant, prediction_type)
        except (CheckpointError, OSError) as e:
            raise ModelInstallError(f"cannot assemble the {found.base} config folder ({e})") from None

    def component_config(self, name: str, submodel: str) -> dict[str, Any]:
        """A component's `config.json` (e.g. the VAE's), read from the model's config folder without
        loading any weights: for pipelines that read a component's config but never run it."""
        import json

        path = self.source_folder(self.get(name)) / submodel / "config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelInstallError(f"model '{name}': cannot read {path} ({e})") from None
        if not isinstance(data, dict):
            raise ModelInstallError(f"model '{name}': {path} is not a JSON object")
        return data

    def load(self, name: str, submodel: str, *, on_load: LoadListener | None = None) -> Any:
        """A loaded component (`unet`, `vae`, `text_encoder`, `tokenizer`, `scheduler`, ...)."""
        record = self.get(name)
        if record.type not in ("main", "controlnet", "t2i_adapter"):  # those two have config folders
            if not Path(record.path).exists():
                raise ModelInstallError(
                    f"{KIND_NAMES[record.type]} '{name}': its file is gone ({record.path}); reinstall or remove it"
                )
            return self.cache.get(record, submodel, on_load=on_load)
        if not Path(record.path).exists():
            raise ModelInstallError(
                f"model '{name}': its files are gone ({record.path}); reinstall it or `invokeai models remove {name}`"
            )
        return self.cache.get(record, submodel, folder=self.source_folder(record), on_load=on_load)

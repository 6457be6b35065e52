"""The model cache: loaded components kept across sessions under a memory budget, LRU eviction.

Components (unet, vae, text encoders, tokenizers, scheduler configs) are cached one by one, keyed by
model name, model hash and submodel, so a prompt node loads only the text encoder and a second run of
the same model loads nothing. A component is inserted only after it loaded completely: a failure
leaves nothing half-loaded behind. Device and dtype are chosen once: CUDA (fp16) if available, then
MPS (fp32, the safe choice there), then CPU (fp32); the VAE of SDXL stays in fp32, since it overflows
in fp16.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core import InvokeAIError

if TYPE_CHECKING:
    from invokeai_diffusers.models.records import ModelRecord
    from invokeai_diffusers.settings import DiffusersSettings

logger = logging.getLogger("invokeai.diffusers.cache")

#: (phase, model, submodel, seconds): phase "started" and "complete" around a real load, "evicted" for each
#: component the load pushed out of the cache (seconds None but for "complete").
LoadListener = Callable[[str, str, str, float | None], None]


class ModelLoadError(InvokeAIError):
    """A model component could not be loaded (missing or corrupt files)."""


@dataclass
class _Entry:
    value: Any
    size: int


def module_size(obj: Any) -> int:
    """Bytes held by a torch module's parameters and buffers (0 for anything else)."""
    params = getattr(obj, "parameters", None)
    if not callable(params) and hasattr(obj, "model"):  # a spandrel model descriptor
        obj = obj.model
        params = getattr(obj, "parameters", None)
    if not callable(params):
        return 0
    total = sum(p.numel() * p.element_size() for p in obj.parameters())
    total += sum(b.numel() * b.element_size() for b in obj.buffers())
    return int(total)


def _state_dict_size(state_dict: Any) -> int:
    return int(sum(t.numel() * t.element_size() for t in state_dict.values() if hasattr(t, "numel")))


def choose_device(setting: str) -> str:
    import torch

    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_dtype(setting: str, device: str) -> Any:
    import torch

    if setting == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[setting]


class ModelCache:
    """LRU cache of loaded components under `budget_bytes` (RAM on CPU, VRAM on GPU)."""

    def __init__(self, settings: DiffusersSettings) -> None:
        self.settings = settings
        self._device: str | None = None
        self._dtype: Any = None
        self._entries: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._lock = threading.RLock()
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}
        self.loads = 0
        self.hits = 0
        self.evictions = 0

    # -- device, dtype, budget ------------------------------------------------------------------
    @property
    def device(self) -> str:
        if self._device is None:
            self._device = choose_device(self.settings.device)
        return self._device

    @property
    def dtype(self) -> Any:
        if self._dtype is None:
            self._dtype = choose_dtype(self.settings.precision, self.device)
        return self._dtype

    @property
    def budget_bytes(self) -> int:
        if self.device.startswith("cuda"):
            if self.settings.vram_budget_gb > 0:
                return int(self.settings.vram_budget_gb * 2**30)
            import torch

            return int(torch.cuda.get_device_properties(self.device).total_memory * 0.8)
        return int(self.settings.ram_budget_gb * 2**30)

    @property
    def used_bytes(self) -> int:
        return sum(e.size for e in self._entries.values())

    def cached(self) -> list[tuple[str, str, int]]:
        return [(k[0], k[2], e.size) for k, e in self._entries.items()]

    # -- access ---------------------------------------------------------------------------------
    def get(
        self, record: ModelRecord, submodel: str, *, folder: Path | None = None, on_load: LoadListener | None = None
    ) -> Any:
        """The loaded component; `folder` holds the component configs (default: the model's own path)."""
        key = (record.name, record.hash, submodel)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry.value
            lock = self._loading.setdefault(key, threading.Lock())
        with lock:  # one loader per component; others wait for it
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry.value
            if on_load is not None:
                on_load("started", record.name, submodel, None)
            t0 = time.perf_counter()
            value = self._load(record, submodel, folder or Path(record.path))
            seconds = time.perf_counter() - t0
            size = module_size(value) if not isinstance(value, tuple) else _state_dict_size(value[0])
            with self._lock:
                evicted = self._make_room(size)
                self._entries[key] = _Entry(value, size)
                self.loads += 1
                self._loading.pop(key, None)
            if on_load is not None:
                for name, part in evicted:
                    on_load("evicted", name, part, None)
                on_load("complete", record.name, submodel, seconds)
            return value

    def _make_room(self, size: int) -> list[tuple[str, str]]:
        """Evict least recently used components until `size` more fits; returns (model, submodel) of each."""
        budget = self.budget_bytes
        evicted: list[tuple[str, str]] = []
        while self._entries and self.used_bytes + size > budget:
            key, entry = self._entries.popitem(last=False)
            self.evictions += 1
            evicted.append((key[0], key[2]))
            logger.info("model cache: evicted %s/%s (%d MB)", key[0], key[2], entry.size >> 20)
        if size > budget:
            logger.warning(
                "model cache: one component (%d MB) exceeds the whole budget (%d MB)", size >> 20, budget >> 20
            )
        return evicted

    def drop(self, model_name: str) -> None:
        with self._lock:
            for key in [k for k in self._entries if k[0] == model_name]:
                del self._entries[key]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    # -- loading --------------------------------------------------------------------------------
    def _load_lora(self, record: ModelRecord, submodel: str) -> Any:
        """A LoRA file's state dict, alphas and metadata (submodel `lora`), read by diffusers."""
        from invokeai_diffusers.lora import LoRAError, read_lora
        from invokeai_diffusers.models.single_file import PICKLE_SUFFIXES

        path = Path(record.path)
        if submodel != "lora":
            raise ModelLoadError(f"LoRA '{record.name}' has only a 'lora' component, not '{submodel}'")
        if path.suffix.lower() in PICKLE_SUFFIXES and not self.settings.allow_pickle:
            raise ModelLoadError(f"LoRA '{record.name}': {path} is a pickle; set plugins.diffusers.allow_pickle")
        try:
            return read_lora(path, record.base)
        except LoRAError as e:
            raise ModelLoadError(f"LoRA '{record.name}': {e}") from None

    def _load_embedding(self, record: ModelRecord, submodel: str) -> Any:
        """A textual inversion file's vectors per text encoder (submodel `embedding`), as a 1-tuple."""
        from invokeai_diffusers.textual_inversion import EmbeddingError, read_embedding

        if submodel != "embedding":
            raise ModelLoadError(f"embedding '{record.name}' has only an 'embedding' component, not '{submodel}'")
        try:
            return (read_embedding(Path(record.path), allow_pickle=self.settings.allow_pickle),)
        except EmbeddingError as e:
            raise ModelLoadError(f"embedding '{record.name}': {e}") from None

    def _load_upscaler(self, record: ModelRecord, submodel: str) -> Any:
        """An upscaler's spandrel `ImageModelDescriptor` (submodel `upscaler`), on the device, in eval
        mode; half precision only where the device's dtype is half and the architecture supports it."""
        import torch

        from invokeai_diffusers.upscale import UpscaleError, describe, read_state_dict

        if submodel != "upscaler":
            raise ModelLoadError(f"upscaler '{record.name}' has only an 'upscaler' component, not '{submodel}'")
        path = Path(record.path)
        try:
            descriptor = describe(read_state_dict(path, allow_pickle=self.settings.allow_pickle), path)
        except UpscaleError as e:
            raise ModelLoadError(f"upscaler '{record.name}': {e}") from None
        dtype = self.dtype
        if (dtype == torch.float16 and not descriptor.supports_half) or (
            dtype == torch.bfloat16 and not descriptor.supports_bfloat16
        ):
            dtype = torch.float32
        descriptor.to(self.device).to(dtype)
        descriptor.eval()
        return descriptor

    def _load_ip_adapter(self, record: ModelRecord, submodel: str) -> Any:
        """An IP-Adapter's state dict (submodel `ip_adapter`, as a 1-tuple) or its CLIP image encoder
        (submodel `image_encoder`, from the `image_encoder` folder beside the file)."""
        from invokeai_diffusers.ip_adapter import IPAdapterError, image_encoder_folder, read_ip_adapter

        path = Path(record.path)
        if submodel == "ip_adapter":
            try:
                return (read_ip_adapter(path),)
            except IPAdapterError as e:
                raise ModelLoadError(f"IP-Adapter '{record.name}': {e}") from None
        if submodel != "image_encoder":
            raise ModelLoadError(f"IP-Adapter '{record.name}' has 'ip_adapter' and 'image_encoder', not '{submodel}'")
        from transformers import CLIPVisionModelWithProjection

        folder = image_encoder_folder(path)
        try:
            model = CLIPVisionModelWithProjection.from_pretrained(str(folder), local_files_only=True, dtype=self.dtype)
        except Exception as e:
            raise ModelLoadError(
                f"IP-Adapter '{record.name}': cannot load its image encoder from {folder}: {type(e).__name__}: {e}"
            ) from None
        model.to(self.device)
        model.eval()
        return model

    def _load_control(self, record: ModelRecord, submodel: str, folder: Path) -> Any:
        """A ControlNet or T2I-Adapter (its one component is named after its type): `from_pretrained` on
        its folder, or `ControlNetModel.from_single_file` with the config folder given at install."""
        import diffusers

        if submodel != record.type:
            raise ModelLoadError(
                f"{record.type} '{record.name}' has only a '{record.type}' component, not '{submodel}'"
            )
        cls = diffusers.ControlNetModel if record.type == "controlnet" else diffusers.T2IAdapter
        try:
            if record.format == "checkpoint":
                model = cls.from_single_file(record.path, config=str(folder), local_files_only=True, dtype=self.dtype)
            else:
                model = cls.from_pretrained(record.path, local_files_only=True, dtype=self.dtype)
            model.to(self.device)
            model.eval()  # requires_grad stays as from_pretrained leaves it (see _load)
            return model
        except Exception as e:
            raise ModelLoadError(
                f"{record.type} '{record.name}': cannot load it from {record.path}: {type(e).__name__}: {e}"
            ) from None

    def _load(self, record: ModelRecord, submodel: str, folder: Path) -> Any:
        from invokeai_diffusers.models.demo import quiet_progress_bars

        quiet_progress_bars()
        if record.type == "lora":
            return self._load_lora(record, submodel)
        if record.type == "embedding":
            return self._load_embedding(record, submodel)
        if record.type == "upscaler":
            return self._load_upscaler(record, submodel)
        if record.type == "ip_adapter":
            return self._load_ip_adapter(record, submodel)
        if record.type in ("controlnet", "t2i_adapter"):
            return self._load_control(record, submodel, folder)
        try:
            index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"model '{record.name}': cannot read {folder / 'model_index.json'} ({e})") from None
        spec = index.get(submodel)
        if not (isinstance(spec, list) and len(spec) == 2 and spec[0] and spec[1]):
            raise ModelLoadError(f"model '{record.name}' has no '{submodel}' component")
        library, class_name = spec
        try:
            cls = getattr(importlib.import_module(library), class_name)
        except (ImportError, AttributeError) as e:
            raise ModelLoadError(
                f"model '{record.name}': component {submodel} needs {library}.{class_name} ({e})"
            ) from None
        source = Path(record.path) if record.format == "checkpoint" else folder / submodel
        try:
            if submodel == "scheduler":
                config = dict(cls.load_config(str(folder), subfolder="scheduler", local_files_only=True))
                if record.prediction_type:
                    config["prediction_type"] = record.prediction_type
                return config
            if submodel.startswith("tokenizer"):
                return cls.from_pretrained(str(folder), subfolder=submodel, local_files_only=True)
            dtype = self.dtype
            if submodel == "vae" and record.base == "sdxl":
                import torch

                dtype = torch.float32
            if record.base in ("flux", "sd-3") and str(dtype) == "torch.float16":
                import torch

                dtype = torch.bfloat16  # T5 and the FLUX/SD3.5 transformers overflow in fp16; bf16 does not
            if record.format == "checkpoint" and record.base in ("flux", "sd-3"):
                from invokeai_diffusers.models.single_file import load_component, read_flow_component

                flow_weights = read_flow_component(source, submodel, allow_pickle=self.settings.allow_pickle)
                if flow_weights is None:  # not in the file: from the config folder (a diffusers folder)
                    model = cls.from_pretrained(str(folder), subfolder=submodel, local_files_only=True, dtype=dtype)
                else:
                    model = load_component(cls, submodel, flow_weights, folder, dtype)
                    del flow_weights
            elif record.format == "checkpoint":
                from invokeai_diffusers.models.single_file import load_component, read_component

                weights = read_component(source, submodel, allow_pickle=self.settings.allow_pickle)
                model = load_component(cls, submodel, weights, folder, dtype)
                del weights
            else:
                model = cls.from_pretrained(str(folder), subfolder=submodel, local_files_only=True, dtype=dtype)
            model.to(self.device)
            model.eval()
            # Parameters keep requires_grad=True, as in a diffusers pipeline: every node runs under
            # inference_mode/no_grad anyway, and aten's matmul folds a 3-D input differently when the
            # weight does not require grad (SDXL's linear projections came out ~1e-5 off the pipeline).
            return model
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(
                f"model '{record.name}': cannot load {submodel} from {source}: {type(e).__name__}: {e}"
            ) from None

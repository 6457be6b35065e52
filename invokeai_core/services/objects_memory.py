"""Large objects (latents, conditioning, ...) kept in memory, spilling the least recently used to
disk when more than `objects_memory_items` are held.

Spilled objects are pickled into `<root>/objects`; the kernel only unpickles files it wrote itself
in that folder. Tensors pickle fine, and the kernel never needs to import torch to do it.
"""

from __future__ import annotations

import os
import pickle
import threading
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core.services.base import ObjectStorageBase

if TYPE_CHECKING:
    from invokeai_core.config import InvokeAIConfig


class MemoryObjectStorage(ObjectStorageBase):
    def __init__(
        self, config: InvokeAIConfig | None = None, *, max_items: int | None = None, folder: str | Path | None = None
    ) -> None:
        self.max_items = max_items if max_items is not None else (config.objects_memory_items if config else 64)
        if folder is not None:
            self.folder = Path(folder)
        elif config is not None:
            self.folder = config.root / "objects"
        else:
            self.folder = Path("objects")
        self._memory: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.RLock()

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise KeyError(f"invalid object name {name!r}")
        return self.folder / f"{name}.pickle"

    def save(self, obj: Any, name: str | None = None) -> str:
        name = name or uuid.uuid4().hex
        self._path(name)
        with self._lock:
            self._memory[name] = obj
            self._memory.move_to_end(name)
            while len(self._memory) > self.max_items:
                old_name, old = self._memory.popitem(last=False)
                self._spill(old_name, old)
        return name

    def _spill(self, name: str, obj: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)

    def load(self, name: str) -> Any:
        with self._lock:
            if name in self._memory:
                self._memory.move_to_end(name)
                return self._memory[name]
            path = self._path(name)
            if not path.exists():
                raise KeyError(f"object '{name}' does not exist")
            with open(path, "rb") as f:
                obj = pickle.load(f)  # noqa: S301 - files this store wrote itself
            path.unlink(missing_ok=True)
        self.save(obj, name)
        return obj

    def delete(self, name: str) -> None:
        with self._lock:
            self._memory.pop(name, None)
            self._path(name).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        return name in self._memory or self._path(name).exists()

    def in_memory(self, name: str) -> bool:
        return name in self._memory

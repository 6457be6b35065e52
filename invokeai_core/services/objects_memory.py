"""Large objects (latents, conditioning, ...) kept in memory, spilling the least recently used to
disk when more than `objects_memory_items` are held.

Spilled objects are pickled into `<root>/objects`; the kernel only unpickles files it wrote itself
in that folder. Tensors pickle fine, and the kernel never needs to import torch to do it.
"""

from __future__ import annotations

import logging
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


logger = logging.getLogger("invokeai.objects")


class MemoryObjectStorage(ObjectStorageBase):
    def __init__(
        self,
        config: InvokeAIConfig | None = None,
        *,
        max_items: int | None = None,
        folder: str | Path | None = None,
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
        path = self._path(name)
        with self._lock:
            self._memory[name] = obj
            self._memory.move_to_end(name)
            path.unlink(missing_ok=True)  # a stale spilled copy must never shadow the new value
            self._evict()
        return name

    def _evict(self) -> None:
        """Spill least recently used objects until at most `max_items` stay in memory."""
        unspillable: list[tuple[str, Any]] = []
        while len(self._memory) > self.max_items:
            old_name, old = self._memory.popitem(last=False)
            try:
                self._spill(old_name, old)
            except Exception as e:  # e.g. an object that cannot be pickled: keep it in memory
                logger.warning("object '%s' cannot be spilled to disk and stays in memory: %s", old_name, e)
                unspillable.append((old_name, old))
        for old_name, old in reversed(unspillable):
            self._memory[old_name] = old
            self._memory.move_to_end(old_name, last=False)

    def _spill(self, name: str, obj: Any) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as f:
                pickle.dump(obj, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load(self, name: str) -> Any:
        with self._lock:
            if name in self._memory:
                self._memory.move_to_end(name)
                return self._memory[name]
            path = self._path(name)
            if not path.exists():
                raise KeyError(f"object '{name}' does not exist")
            with open(path, "rb") as f:
                obj = pickle.load(f)
            self.save(obj, name)  # back in memory as the most recently used (removes the file)
        return obj

    def delete(self, name: str) -> None:
        with self._lock:
            self._memory.pop(name, None)
            self._path(name).unlink(missing_ok=True)

    def exists(self, name: str) -> bool:
        if name in self._memory:
            return True
        try:
            return self._path(name).is_file()
        except KeyError:  # an invalid name names nothing
            return False

    def in_memory(self, name: str) -> bool:
        return name in self._memory

"""The kernel's default image file store: PNG files and WebP thumbnails in a local folder.

Each PNG carries its metadata (graph, session, node, parameters) as text chunks, so an image file
on its own says how it was made. Files are written to a temporary name and renamed, so a crash
never leaves a half-written image under its real name.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from invokeai_core.crashpoints import crash_point
from invokeai_core.services.base import ImageFileStorageBase

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core.config import InvokeAIConfig


#: Modes PNG cannot store that convert to RGB without surprise.
_CONVERT_TO_RGB = frozenset({"CMYK", "YCbCr", "LAB", "HSV"})


def _safe_name(image_name: str) -> str:
    if not image_name or "/" in image_name or "\\" in image_name or image_name.startswith("."):
        raise KeyError(f"invalid image name {image_name!r}")
    return image_name


class LocalImageFileStorage(ImageFileStorageBase):
    """Images under `<root>/outputs/images`, thumbnails under `<root>/outputs/thumbnails`."""

    def __init__(self, config: InvokeAIConfig | None = None, *, folder: str | Path | None = None) -> None:
        base = Path(folder) if folder is not None else (config.outputs_dir if config is not None else Path("outputs"))
        self.images_dir = base / "images"
        self.thumbnails_dir = base / "thumbnails"

    def _paths(self, image_name: str) -> tuple[Path, Path]:
        name = _safe_name(image_name)
        return self.images_dir / name, self.thumbnails_dir / (Path(name).stem + ".webp")

    def save(
        self,
        image_name: str,
        image: Image,
        *,
        metadata: dict[str, str] | None = None,
        thumbnail_size: int = 256,
    ) -> None:
        from PIL.PngImagePlugin import PngInfo

        path, thumb = self._paths(image_name)
        self.images_dir.mkdir(parents=True, exist_ok=True)
        self.thumbnails_dir.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        for key, value in (metadata or {}).items():
            info.add_itxt(key, value)
        if image.mode in _CONVERT_TO_RGB:
            image = image.convert("RGB")
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        ttmp = thumb.with_name(f".{thumb.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            # Both files are written under temporary names first, then renamed: a failure (an
            # unsupported mode, a full disk) leaves neither a half-written image nor a stray file.
            image.save(tmp, "PNG", pnginfo=info)
            crash_point("images.write")
            small = image.copy()
            small.thumbnail((thumbnail_size, thumbnail_size))
            if small.mode not in ("RGB", "RGBA"):
                small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
            small.save(ttmp, "WEBP", quality=80)
            os.replace(tmp, path)
            os.replace(ttmp, thumb)
        finally:
            tmp.unlink(missing_ok=True)
            ttmp.unlink(missing_ok=True)

    def get(self, image_name: str) -> Image:
        from PIL import Image as PILImage

        path, _ = self._paths(image_name)
        if not path.exists():
            raise KeyError(f"image '{image_name}' does not exist")
        with PILImage.open(path) as img:
            img.load()
            return img.copy() if not getattr(img, "text", None) else _with_text(img)

    def get_bytes(self, image_name: str, *, thumbnail: bool = False) -> bytes:
        path, thumb = self._paths(image_name)
        target = thumb if thumbnail else path
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise KeyError(f"image '{image_name}' does not exist") from None

    def exists(self, image_name: str) -> bool:
        try:
            return self._paths(image_name)[0].is_file()
        except KeyError:
            return False

    def delete(self, image_name: str) -> None:
        for p in self._paths(image_name):
            p.unlink(missing_ok=True)

    def get_path(self, image_name: str, *, thumbnail: bool = False) -> str | None:
        path, thumb = self._paths(image_name)
        return str(thumb if thumbnail else path)

    def list_names(self) -> list[str] | None:
        """Every image file (temporary files of a save in progress, named `.*.tmp`, excluded)."""
        if not self.images_dir.is_dir():
            return []
        return sorted(p.name for p in self.images_dir.iterdir() if p.is_file() and not p.name.startswith("."))

    def remove_stale_temp_files(self, *, min_age: float) -> list[str]:
        """Delete the temporary files (`.*.tmp`) of saves that a crash interrupted, older than
        `min_age` seconds (a younger one may be a save in progress in another process)."""
        removed = []
        now = time.time()
        for folder in (self.images_dir, self.thumbnails_dir):
            if not folder.is_dir():
                continue
            for p in folder.glob(".*.tmp"):
                try:
                    if now - p.stat().st_mtime >= min_age:
                        p.unlink()
                        removed.append(p.name)
                except OSError:
                    continue  # gone meanwhile, or not ours to delete
        return removed

    def age_seconds(self, image_name: str) -> float | None:
        try:
            return time.time() - self._paths(image_name)[0].stat().st_mtime
        except (OSError, KeyError):
            return None


def _with_text(img: Any) -> Any:
    copy = img.copy()
    copy.info.update(img.text)
    return copy

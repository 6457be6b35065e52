"""The two nodes that touch files outside the image service: `image_load` and `save_image`.

Both work only inside the folders of `plugins.nodes.allowed_paths` (see `settings`), and neither is
cached: a file on disk may change between two runs, and an export is a side effect that must happen
every time it is asked for.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from invokeai_core import BaseInvocation, ImageField, InputField, invocation
from invokeai_nodes.image_io import image_output, load_image
from invokeai_nodes.image_outputs import ImageOutput
from invokeai_nodes.pil import storable
from invokeai_nodes.settings import resolve_allowed

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import InvocationContext


@invocation(
    "image_load",
    title="Load Image File",
    tags=["image", "load", "file"],
    category="images",
    version="1.0.0",
    use_cache=False,
)
class ImageLoadInvocation(BaseInvocation):
    """Reads an image file from the server's disk into the image service (as an intermediate image).

    Only files inside `plugins.nodes.allowed_paths` can be read (by default `<root>/inputs` and
    `<root>/exports`). EXIF orientation is applied, so photos come out upright.
    """

    path: str = InputField(
        description="The image file: absolute, or relative to the root folder; inside plugins.nodes.allowed_paths",
        min_length=1,
    )

    def invoke(self, context: InvocationContext) -> ImageOutput:
        from PIL import Image as PILImage
        from PIL import ImageOps, UnidentifiedImageError

        target = resolve_allowed(context.config, self.path, node="image_load", field="path")
        if not target.is_file():
            raise FileNotFoundError(f"image_load: input 'path': there is no file at {target}")
        try:
            with PILImage.open(target) as img:
                img.load()
                image = ImageOps.exif_transpose(img)
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"image_load: {target} is not an image file Pillow can read ({e})") from None
        return image_output(context, storable(image), metadata={"source_path": str(target)})


@invocation(
    "save_image",
    title="Save Image",
    tags=["image", "save", "output"],
    category="images",
    version="1.0.0",
    use_cache=False,
)
class SaveImageInvocation(BaseInvocation):
    """Marks an image as a final output: stores a non-intermediate copy (with the graph that made it)
    that galleries show, and optionally exports it as a PNG file.

    Every other image node's result is intermediate; this node is how a graph says "keep this".
    """

    image: ImageField = InputField(description="The image to save")
    export_path: str = InputField(
        default="",
        description="Also write a PNG here: a path ending in .png, or a folder (the file takes the image's "
        "name); absolute or relative to the root folder, inside plugins.nodes.allowed_paths. Empty: no export",
    )
    overwrite: bool = InputField(default=False, description="Replace an existing file at export_path")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        export: Path | None = None
        if self.export_path:
            # Checked before anything is stored: a refused export leaves no orphan final image.
            export = resolve_allowed(context.config, self.export_path, node="save_image", field="export_path")
            if export.suffix.lower() == ".png":
                self._check_overwrite(export)
            elif export.exists() and not export.is_dir():
                raise NotADirectoryError(
                    f"save_image: input 'export_path': {export} is a file; give a folder or a path ending in .png"
                )
        image = load_image(context, self.image, "image")
        output = image_output(context, image, is_intermediate=False)
        if export is not None:
            target = export if export.suffix.lower() == ".png" else export / output.image.image_name
            self._check_overwrite(target)
            _write_png(context.images.load(output.image), target)
            context.logger.info("save_image: exported %s to %s", output.image.image_name, target)
        return output

    def _check_overwrite(self, target: Path) -> None:
        if target.is_dir():
            raise IsADirectoryError(f"save_image: input 'export_path': {target} is a folder, not a .png file")
        if target.exists() and not self.overwrite:
            raise FileExistsError(f"save_image: {target} already exists; set 'overwrite' to replace it")


def _write_png(image: Image, target: Path) -> None:
    """Write `image` with its PNG text chunks (graph, session, node) to `target`, atomically: a crash
    never leaves a half-written file under the real name."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in image.info.items():
        if isinstance(key, str) and isinstance(value, str):
            info.add_itxt(key, value)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        image.save(tmp, "PNG", pnginfo=info)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


NODES: list[type[BaseInvocation]] = [ImageLoadInvocation, SaveImageInvocation]

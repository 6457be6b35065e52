"""`InvocationContext`: a node's only door to the world.

Nodes reach images, objects, progress reporting, cancellation, logging, configuration and
plugin-provided services through it, never through globals, so the same node runs in the CLI, the
web server or a test harness unchanged.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core.config import InvokeAIConfig
    from invokeai_core.invocations.fields import ImageField
    from invokeai_core.services.base import ImageRecord
    from invokeai_core.services.container import Services

S = TypeVar("S")
_logger = logging.getLogger("invokeai.nodes")


class ImagesInterface:
    """`context.images`: save and load PIL images through the image service."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: InvocationContext) -> None:
        self._ctx = ctx

    def save(
        self, image: Image, *, is_intermediate: bool = True, metadata: dict[str, Any] | None = None
    ) -> ImageRecord:
        """Store an image produced by this node. Images are intermediate unless marked final (as
        `save_image` does), so galleries can hide them. The graph and node are embedded in the PNG."""
        ctx = self._ctx
        return ctx._services.image_service.create(
            image,
            session_id=ctx.session_id,
            node_id=ctx.node_id,
            is_intermediate=is_intermediate,
            metadata=metadata,
            graph=ctx.graph_json() if not is_intermediate else None,
        )

    def load(self, image: ImageField | str) -> Image:
        """The PIL image for an `ImageField` (or an image name)."""
        name = image if isinstance(image, str) else image.image_name
        return self._ctx._services.image_service.get_pil(name)

    def get_record(self, image: ImageField | str) -> ImageRecord:
        name = image if isinstance(image, str) else image.image_name
        return self._ctx._services.image_service.get_record(name)

    def get_path(self, image: ImageField | str) -> str | None:
        name = image if isinstance(image, str) else image.image_name
        return self._ctx._services.images.get_path(name)


class ObjectsInterface:
    """`context.objects`: store large values (tensors, conditioning) by name."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: InvocationContext) -> None:
        self._ctx = ctx

    def save(self, obj: Any, name: str | None = None) -> str:
        return self._ctx._services.objects.save(obj, name)

    def load(self, name: str) -> Any:
        return self._ctx._services.objects.load(name)


class ServiceLookup:
    """`context.services`: `get(SomeServiceABC)` or `get("kind")` for plugin-provided services."""

    __slots__ = ("_services",)

    def __init__(self, services: Services) -> None:
        self._services = services

    # `Callable[..., S]` rather than `type[S]`: type checkers refuse an abstract class for `type[S]`,
    # and looking a service up by its ABC is the point.
    @overload
    def get(self, kind: str) -> Any: ...
    @overload
    def get(self, kind: Callable[..., S]) -> S: ...

    def get(self, kind: Any) -> Any:
        """The service of a kind (`"images"`, or a plugin's own kind) or implementing a class (an ABC)."""
        return self._services.get(kind)


def encode_preview(image: Image, max_size: int = 256) -> dict[str, Any]:
    """A small JPEG data URL for a progress preview."""
    small = image
    if max(image.size) > max_size:
        small = image.copy()
        small.thumbnail((max_size, max_size))
    if small.mode != "RGB":
        small = small.convert("RGB")
    buf = io.BytesIO()
    small.save(buf, "JPEG", quality=70)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return {"width": small.width, "height": small.height, "dataURL": f"data:image/jpeg;base64,{data}"}


class InvocationContext:
    """What `invoke(context)` receives. Cheap to create: parts are built on first use."""

    __slots__ = (
        "_emit_progress",
        "_graph_json",
        "_images",
        "_is_canceled",
        "_objects",
        "_services",
        "invocation_type",
        "item_id",
        "node_id",
        "queue_id",
        "session_id",
        "source_node_id",
    )

    def __init__(
        self,
        services: Services,
        *,
        session_id: str,
        node_id: str,
        source_node_id: str,
        invocation_type: str,
        is_canceled: Callable[[], bool] | None = None,
        emit_progress: Callable[[int, int, str | None, Callable[[], dict[str, Any]] | None], None] | None = None,
        graph_json: Callable[[], dict[str, Any]] | None = None,
        queue_id: str | None = None,
        item_id: int | None = None,
    ) -> None:
        self._services = services
        self.session_id = session_id
        self.node_id = node_id
        self.source_node_id = source_node_id
        self.invocation_type = invocation_type
        self.queue_id = queue_id
        self.item_id = item_id
        self._is_canceled = is_canceled
        self._emit_progress = emit_progress
        self._graph_json = graph_json
        self._images: ImagesInterface | None = None
        self._objects: ObjectsInterface | None = None

    @property
    def images(self) -> ImagesInterface:
        if self._images is None:
            self._images = ImagesInterface(self)
        return self._images

    @property
    def objects(self) -> ObjectsInterface:
        if self._objects is None:
            self._objects = ObjectsInterface(self)
        return self._objects

    @property
    def services(self) -> ServiceLookup:
        return ServiceLookup(self._services)

    @property
    def config(self) -> InvokeAIConfig:
        return self._services.config

    @property
    def logger(self) -> logging.Logger:
        return _logger

    def is_canceled(self) -> bool:
        """Long-running nodes poll this between steps and stop early when it turns True."""
        return self._is_canceled() if self._is_canceled is not None else False

    def progress(
        self,
        step: int,
        total: int,
        *,
        image: Image | Callable[[], Image] | None = None,
        message: str | None = None,
    ) -> None:
        """Report progress (emits `invocation_progress`, with a small preview when given an image).

        `image` may be a function returning the preview: it is called (and the preview encoded) only
        if someone is listening, so a node can offer previews at no cost when nobody watches.
        """
        if self._emit_progress is None:
            return
        preview: Callable[[], dict[str, Any]] | None = None
        if image is not None:
            source = image

            def preview() -> dict[str, Any]:
                return encode_preview(source() if callable(source) else source)

        self._emit_progress(step, total, message, preview)

    def graph_json(self) -> dict[str, Any] | None:
        return self._graph_json() if self._graph_json is not None else None

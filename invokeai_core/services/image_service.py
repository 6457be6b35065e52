"""Images as nodes see them: a file in the `images` store plus a record in `image_records`.

The file is written first and the record second; if writing the record fails the file is removed.
Deleting removes the record first, then the file and its thumbnail. Readers only find images
through records, so a half-written image never appears: a crash between the two steps can leave a
file without a record (never a record without a file), which `collect_orphans` removes.
"""

from __future__ import annotations

import builtins
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from invokeai_core.services.base import ImageFileStorageBase, ImageRecord, ImageRecordStorageBase, Page

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger("invokeai.images")


class ImageService:
    def __init__(self, files: ImageFileStorageBase, records: ImageRecordStorageBase) -> None:
        self.files = files
        self.records = records

    def create(
        self,
        image: Image,
        *,
        session_id: str | None = None,
        node_id: str | None = None,
        is_intermediate: bool = True,
        metadata: dict[str, Any] | None = None,
        graph: dict[str, Any] | None = None,
        image_name: str | None = None,
    ) -> ImageRecord:
        name = image_name or f"{uuid.uuid4().hex}.png"
        chunks: dict[str, str] = {}
        if metadata is not None:
            chunks["invokeai_metadata"] = json.dumps(metadata)
        if graph is not None:
            chunks["invokeai_graph"] = json.dumps(graph)
        if session_id:
            chunks["invokeai_session_id"] = session_id
        if node_id:
            chunks["invokeai_node_id"] = node_id
        record = ImageRecord(
            image_name=name,
            width=image.width,
            height=image.height,
            mode=image.mode,
            session_id=session_id,
            node_id=node_id,
            is_intermediate=is_intermediate,
            metadata=metadata,
            graph=graph,
        )
        self.files.save(name, image, metadata=chunks)
        try:
            self.records.save(record)
        except BaseException:
            self.files.delete(name)
            raise
        return record

    def get_pil(self, image_name: str) -> Image:
        self.records.get(image_name)  # raises KeyError for unknown images
        return self.files.get(image_name)

    def get_record(self, image_name: str) -> ImageRecord:
        return self.records.get(image_name)

    def list(self, **filters: Any) -> Page[ImageRecord]:
        return self.records.list(**filters)

    def delete(self, image_name: str) -> None:
        """Delete the record, then the file and its thumbnail."""
        self.records.delete(image_name)
        self.files.delete(image_name)

    def collect_orphans(self, *, min_age: float = 300.0) -> builtins.list[str]:
        """Delete image files that have no record and are older than `min_age` seconds (a younger
        one may be a save in progress in another process). Returns their names. A no-op for stores
        that cannot list their files. Temporary files of saves a crash interrupted go too."""
        sweep = getattr(self.files, "remove_stale_temp_files", None)
        if callable(sweep):
            stale = sweep(min_age=min_age)
            if stale:
                logger.info("removed %d temporary file(s) of interrupted image saves", len(stale))
        names = self.files.list_names()
        if not names:
            return []
        known_names = getattr(self.records, "names", None)
        known: set[str] | None = known_names() if callable(known_names) else None
        removed = []
        for name in names:
            if known is not None:
                if name in known:
                    continue
            else:
                try:
                    self.records.get(name)
                    continue
                except KeyError:
                    pass
            age = self.files.age_seconds(name)
            if age is None or age < min_age:
                continue
            self.files.delete(name)
            removed.append(name)
        if removed:
            logger.info("removed %d image file(s) without a record", len(removed))
        return removed

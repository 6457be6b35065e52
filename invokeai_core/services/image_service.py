"""Images as nodes see them: a file in the `images` store plus a record in `image_records`.

The file is written first and the record second; if writing the record fails the file is removed.
Readers only find images through records, so a half-written image never appears.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from invokeai_core.services.base import ImageFileStorageBase, ImageRecord, ImageRecordStorageBase, Page

if TYPE_CHECKING:
    from PIL.Image import Image


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
        self.records.delete(image_name)
        self.files.delete(image_name)

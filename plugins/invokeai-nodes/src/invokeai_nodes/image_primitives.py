"""Image primitives: name an image that the image service already holds, to feed it to nodes.

They read only the image's record (its size), never its pixels, so they are cheap and import no
image library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import BaseInvocation, ImageField, InputField, invocation
from invokeai_nodes.image_io import image_record
from invokeai_nodes.image_outputs import ImageCollectionOutput, ImageOutput

if TYPE_CHECKING:
    from invokeai_core import InvocationContext


@invocation("image", title="Image", tags=["primitive", "image"], category="primitives", version="1.0.0")
class ImageInvocation(BaseInvocation):
    """An existing image, by name (e.g. one uploaded to the gallery)."""

    image: ImageField = InputField(description="The image to output")

    def invoke(self, context: InvocationContext) -> ImageOutput:
        record = image_record(context, self.image, "image")
        return ImageOutput(image=self.image, width=record.width, height=record.height)


@invocation(
    "image_collection",
    title="Image Collection",
    tags=["primitive", "image", "collection"],
    category="primitives",
    version="1.0.0",
)
class ImageCollectionInvocation(BaseInvocation):
    """A list of existing images, by name (e.g. to iterate over them)."""

    collection: list[ImageField] = InputField(default=[], description="The images to output")

    def invoke(self, context: InvocationContext) -> ImageCollectionOutput:
        for i, image in enumerate(self.collection):
            image_record(context, image, f"collection[{i}]")
        return ImageCollectionOutput(collection=list(self.collection))


NODES: list[type[BaseInvocation]] = [ImageInvocation, ImageCollectionInvocation]

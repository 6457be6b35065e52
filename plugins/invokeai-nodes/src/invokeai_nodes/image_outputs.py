"""The outputs of image nodes.

Images never travel inside a graph: a node saves its result through `context.images` and outputs an
`ImageField` reference (plus the size, which downstream nodes and UIs often need without loading
the pixels). Other node packs may return these outputs too (an output type id is registered once).
"""

from __future__ import annotations

from invokeai_core import BaseInvocationOutput, ImageField, OutputField, invocation_output


@invocation_output("image_output")
class ImageOutput(BaseInvocationOutput):
    """One image, by reference, with its size."""

    image: ImageField = OutputField(description="The image")
    width: int = OutputField(description="The width of the image in pixels")
    height: int = OutputField(description="The height of the image in pixels")


@invocation_output("image_collection_output")
class ImageCollectionOutput(BaseInvocationOutput):
    """A list of images, by reference."""

    collection: list[ImageField] = OutputField(description="The images")

"""Nodes the tests run graphs with: one draws an image and saves it, one loads, inverts and saves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    InputField,
    OutputField,
    invocation,
    invocation_output,
)

if TYPE_CHECKING:
    from invokeai_core import InvocationContext


@invocation_output("s3t_image_output")
class S3TImageOutput(BaseInvocationOutput):
    image: ImageField = OutputField(description="The image")
    width: int = OutputField(description="Width")
    height: int = OutputField(description="Height")


@invocation("s3t_gradient", version="1.0.0")
class S3TGradient(BaseInvocation):
    """Draws a horizontal gradient and saves it (a final image unless `final` is off)."""

    width: int = InputField(default=48, description="Width")
    height: int = InputField(default=32, description="Height")
    final: bool = InputField(default=True, description="Save as a final image")

    def invoke(self, context: InvocationContext) -> S3TImageOutput:
        from PIL import Image

        image = Image.new("RGB", (self.width, self.height))
        for x in range(self.width):
            for y in range(self.height):
                image.putpixel((x, y), (x * 255 // max(1, self.width - 1), y * 7 % 256, 100))
        record = context.images.save(
            image, is_intermediate=not self.final, metadata={"width": self.width, "note": "dégradé"}
        )
        return S3TImageOutput(image=record.field, width=record.width, height=record.height)


@invocation("s3t_invert", version="1.0.0")
class S3TInvert(BaseInvocation):
    """Loads an image through the context, inverts it and saves the result."""

    image: ImageField = InputField(description="The image to invert")

    def invoke(self, context: InvocationContext) -> S3TImageOutput:
        from PIL import ImageOps

        inverted = ImageOps.invert(context.images.load(self.image).convert("RGB"))
        record = context.images.save(inverted, is_intermediate=False)
        return S3TImageOutput(image=record.field, width=record.width, height=record.height)


ALL_NODES = (S3TGradient, S3TInvert)

GRAPH = {
    "nodes": {
        "make": {"id": "make", "type": "s3t_gradient", "width": 48, "height": 32},
        "invert": {"id": "invert", "type": "s3t_invert"},
    },
    "edges": [
        {"source": {"node_id": "make", "field": "image"}, "destination": {"node_id": "invert", "field": "image"}}
    ],
}

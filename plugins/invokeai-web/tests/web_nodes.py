"""Small nodes the web tests run (registered per test; `wt_` keeps them apart from installed packs)."""

from __future__ import annotations

import time

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    InputField,
    InvocationContext,
    OutputField,
    invocation,
    invocation_output,
)


@invocation_output("wt_int_output")
class WtIntOutput(BaseInvocationOutput):
    value: int = OutputField(description="The value")


@invocation_output("wt_image_output")
class WtImageOutput(BaseInvocationOutput):
    image: ImageField = OutputField(description="The image")
    width: int = OutputField(description="Its width")
    height: int = OutputField(description="Its height")


@invocation("wt_int", title="Web Test Integer", tags=["test"], category="test", version="1.0.0")
class WtIntInvocation(BaseInvocation):
    """An integer."""

    value: int = InputField(default=0, description="The value", ui_order=1)

    def invoke(self, context: InvocationContext) -> WtIntOutput:
        return WtIntOutput(value=self.value)


@invocation("wt_double", title="Web Test Double", tags=["test"], category="test", version="1.0.0")
class WtDoubleInvocation(BaseInvocation):
    """Doubles its input."""

    value: int = InputField(description="The value to double")

    def invoke(self, context: InvocationContext) -> WtIntOutput:
        return WtIntOutput(value=self.value * 2)


@invocation("wt_add", title="Web Test Add", tags=["test"], category="test", version="1.0.0")
class WtAddInvocation(BaseInvocation):
    """Adds two integers."""

    a: int = InputField(default=0, description="First")
    b: int = InputField(default=0, description="Second")

    def invoke(self, context: InvocationContext) -> WtIntOutput:
        return WtIntOutput(value=self.a + self.b)


@invocation("wt_gray", title="Web Test Gray Image", tags=["test"], category="test", version="1.0.0")
class WtGrayInvocation(BaseInvocation):
    """A gray image whose level is the input value."""

    value: int = InputField(default=128, ge=0, le=255, description="The gray level")
    size: int = InputField(default=16, ge=1, le=512, description="Width and height", ui_type="size")

    def invoke(self, context: InvocationContext) -> WtImageOutput:
        from PIL import Image

        record = context.images.save(Image.new("L", (self.size, self.size), self.value), is_intermediate=False)
        return WtImageOutput(image=ImageField(image_name=record.image_name), width=self.size, height=self.size)


@invocation("wt_slow", title="Web Test Slow", tags=["test"], category="test", version="1.0.0", use_cache=False)
class WtSlowInvocation(BaseInvocation):
    """Counts steps slowly, reporting progress with a preview; stops when canceled."""

    steps: int = InputField(default=10, ge=1, le=10_000, description="Steps")
    delay: float = InputField(default=0.01, ge=0, le=1, description="Seconds per step")
    message_bytes: int = InputField(default=0, ge=0, le=1_000_000, description="A progress message this long")

    def invoke(self, context: InvocationContext) -> WtIntOutput:
        from PIL import Image

        done = 0
        for step in range(1, self.steps + 1):
            if context.is_canceled():
                break
            time.sleep(self.delay)
            done = step
            level = step % 256
            context.progress(
                step,
                self.steps,
                image=lambda level=level: Image.new("RGB", (512, 512), (level, 0, 0)),
                message="x" * self.message_bytes or None,
            )
        return WtIntOutput(value=done)


ALL_NODES = (WtIntInvocation, WtDoubleInvocation, WtAddInvocation, WtGrayInvocation, WtSlowInvocation)

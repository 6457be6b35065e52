"""Test nodes: constants, arithmetic, a cancellable sleeper, a failing node, an image maker."""

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


@invocation_output("tp_number_output")
class TpNumberOutput(BaseInvocationOutput):
    value: float = OutputField(description="A number")


@invocation_output("tp_image_output")
class TpImageOutput(BaseInvocationOutput):
    image: ImageField = OutputField(description="The image")
    width: int = OutputField(description="Width in pixels")
    height: int = OutputField(description="Height in pixels")


@invocation("tp_const", title="Constant", category="testpack", version="1.0.0")
class TpConstInvocation(BaseInvocation):
    """Outputs its value."""

    value: float = InputField(default=0.0, description="The value")

    def invoke(self, context: InvocationContext) -> TpNumberOutput:
        return TpNumberOutput(value=self.value)


@invocation("tp_scale", title="Scale", category="testpack", version="1.0.0")
class TpScaleInvocation(BaseInvocation):
    """Multiplies value by factor."""

    value: float = InputField(description="The value")
    factor: float = InputField(default=2.0, description="The factor")

    def invoke(self, context: InvocationContext) -> TpNumberOutput:
        return TpNumberOutput(value=self.value * self.factor)


@invocation("tp_sleep", title="Sleep", category="testpack", version="1.0.0", use_cache=False)
class TpSleepInvocation(BaseInvocation):
    """Sleeps in small steps, reporting progress, until done or canceled."""

    seconds: float = InputField(default=5.0, description="How long to sleep")
    value: float = InputField(default=0.0, description="Passed through")

    def invoke(self, context: InvocationContext) -> TpNumberOutput:
        steps = max(1, int(self.seconds / 0.01))
        for step in range(steps):
            if context.is_canceled():
                break
            time.sleep(0.01)
            context.progress(step + 1, steps)
        return TpNumberOutput(value=self.value)


@invocation("tp_tally", title="Tally", category="testpack", version="1.0.0", use_cache=False)
class TpTallyInvocation(BaseInvocation):
    """Adds one to its value and appends its node id to a log file: a record of every run, which a
    crash test compares with what the session committed."""

    value: float = InputField(default=0.0, description="The value")
    log: str = InputField(description="The file to append the node id to")

    def invoke(self, context: InvocationContext) -> TpNumberOutput:
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(context.node_id + "\n")
        return TpNumberOutput(value=self.value + 1)


@invocation("tp_fail", title="Fail", category="testpack", version="1.0.0")
class TpFailInvocation(BaseInvocation):
    """Always raises."""

    message: str = InputField(default="boom", description="The error message")

    def invoke(self, context: InvocationContext) -> TpNumberOutput:
        raise RuntimeError(self.message)


@invocation("tp_gradient", title="Gradient", category="testpack", version="1.0.0")
class TpGradientInvocation(BaseInvocation):
    """A horizontal grey gradient image."""

    width: int = InputField(default=64, ge=1, le=4096, description="Width")
    height: int = InputField(default=32, ge=1, le=4096, description="Height")

    def invoke(self, context: InvocationContext) -> TpImageOutput:
        from PIL import Image

        img = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90)
        img = img.resize((self.width, self.height)).convert("RGB")
        record = context.images.save(img, is_intermediate=False)
        return TpImageOutput(image=record.field, width=img.width, height=img.height)

"""The `ip_adapter` node: an installed IP-Adapter and an image prompt, for `denoise_latents`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    InputField,
    InvocationContext,
    NodeFieldError,
    OutputField,
    invocation,
    invocation_output,
)
from invokeai_diffusers.fields import IPAdapterField
from invokeai_diffusers.nodes.common import DiffusionNodeError, not_a, record

if TYPE_CHECKING:
    from invokeai_core import Services


@invocation_output("ip_adapter_output")
class IPAdapterOutput(BaseInvocationOutput):
    """An IP-Adapter with its image prompt (connect to denoise_latents' ip_adapter, or collect several)."""

    ip_adapter: IPAdapterField = OutputField(description="The IP-Adapter, its image and weight")


@invocation(
    "ip_adapter", title="IP-Adapter", tags=["ip_adapter", "image prompt"], category="conditioning", version="1.0.0"
)
class IPAdapterInvocation(BaseInvocation):
    """Prompts denoising with an image through an installed IP-Adapter (SD 1.x/2.x/XL).

    Applied as diffusers' `load_ip_adapter` + `set_ip_adapter_scale(weight)` + `ip_adapter_image`
    do, for the steps between `begin_step_percent` and `end_step_percent`."""

    model: str = InputField(
        description="The installed IP-Adapter's name (see `invokeai models list`)",
        ui_type="model",
        ui_model_type="ip_adapter",
    )
    image: ImageField = InputField(description="The image prompt")
    weight: float = InputField(default=1.0, ge=-1, le=2, description="The adapter's scale (0 = no effect)")
    begin_step_percent: float = InputField(default=0.0, ge=0, le=1, description="Acts from this fraction of the steps")
    end_step_percent: float = InputField(default=1.0, ge=0, le=1, description="Acts until this fraction of the steps")

    def preflight(self, services: Services) -> None:
        from invokeai_core import InvokeAIError
        from invokeai_diffusers.models.manager import ModelManager

        try:
            found = services.get(ModelManager).get(self.model)
        except InvokeAIError as e:
            raise NodeFieldError(str(e), self.id, "model") from None
        if found.type != "ip_adapter":
            raise NodeFieldError(not_a(found, "an IP-Adapter"), self.id, "model")
        if self.begin_step_percent >= self.end_step_percent:
            raise NodeFieldError(
                f"must be greater than begin_step_percent ({self.begin_step_percent})", self.id, "end_step_percent"
            )

    def invoke(self, context: InvocationContext) -> IPAdapterOutput:
        found = record(context, self.model, "model")
        if found.type != "ip_adapter":
            raise DiffusionNodeError("model", not_a(found, "an IP-Adapter"))
        if self.begin_step_percent >= self.end_step_percent:
            raise DiffusionNodeError("end_step_percent", "must be greater than begin_step_percent")
        return IPAdapterOutput(
            ip_adapter=IPAdapterField(
                name=found.name,
                image=self.image,
                weight=self.weight,
                begin_step_percent=self.begin_step_percent,
                end_step_percent=self.end_step_percent,
            )
        )

"""Field types of this pack that other packs may reuse.

A `ColorField` is a small value (four bytes), so unlike an image it travels inside the graph.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

_HEX = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")


class ColorField(BaseModel):
    """An RGBA color, each channel 0..255 (`a` 255 is opaque).

    Accepts `{"r": 255, "g": 0, "b": 0}` (alpha defaults to 255) or a hex string `"#ff0000"` /
    `"#ff000080"`, which is what people type on a command line.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: int = Field(ge=0, le=255, description="Red, 0..255")
    g: int = Field(ge=0, le=255, description="Green, 0..255")
    b: int = Field(ge=0, le=255, description="Blue, 0..255")
    a: int = Field(default=255, ge=0, le=255, description="Alpha (opacity), 0..255; 255 is opaque")

    @model_validator(mode="before")
    @classmethod
    def _from_hex(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        match = _HEX.match(data.strip())
        if match is None:
            raise ValueError(f"{data!r} is not a color: use '#rrggbb', '#rrggbbaa' or {{'r', 'g', 'b', 'a'}}")
        rgb, alpha = match.groups()
        return {
            "r": int(rgb[0:2], 16),
            "g": int(rgb[2:4], 16),
            "b": int(rgb[4:6], 16),
            "a": int(alpha, 16) if alpha else 255,
        }

    def as_tuple(self) -> tuple[int, int, int, int]:
        """`(r, g, b, a)`, the form Pillow takes."""
        return (self.r, self.g, self.b, self.a)

"""The plugin's settings: the `[plugins.diffusers]` table of invokeai.toml.

[plugins.diffusers]
device = "auto"        # auto, cpu, cuda, cuda:1, mps
precision = "auto"     # auto (fp16 on cuda, fp32 elsewhere), float32, float16, bfloat16
ram_budget_gb = 6.0    # loaded components kept in RAM (CPU) before the least recently used go
vram_budget_gb = 0     # 0 = 80% of the GPU's memory
allow_pickle = false   # .ckpt/.pt checkpoints run arbitrary code when loaded: refused unless true
api_model_folders = [] # besides the models folder, where POST /api/v1/models may install from
api_any_path = false   # let POST /api/v1/models install from any path on the server (admins only)

`invokeai models add` on the server's own command line may install from anywhere; the HTTP API,
which anyone who can reach the server may call, only from inside these folders, so it neither reads
nor reveals what lies elsewhere on the server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DiffusersSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N or mps")
    precision: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    ram_budget_gb: float = Field(default=6.0, gt=0)
    vram_budget_gb: float = Field(default=0.0, ge=0)
    allow_pickle: bool = False
    models_dir: Path | None = Field(default=None, description="Where demo models are written (default <root>/models)")
    api_model_folders: list[Path] = Field(
        default_factory=list,
        description="Folders besides models_dir that POST /api/v1/models may install from (relative: under the root)",
    )
    api_any_path: bool = Field(default=False, description="Let POST /api/v1/models install from any server path")


def load_settings(config: Any) -> DiffusersSettings:
    """Settings from the configuration, with errors naming the key."""
    return config.plugin_settings_as("diffusers", DiffusersSettings) if config is not None else DiffusersSettings()

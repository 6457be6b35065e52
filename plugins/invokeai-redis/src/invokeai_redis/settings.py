"""The `[plugins.redis]` settings (pydantic only; never imports redis-py).

[plugins.redis]
url = "redis://127.0.0.1:6379/0"   # INVOKEAI_PLUGINS__REDIS__URL; a password goes in the URL
channel = "invokeai:events"        # processes sharing events use the same channel
connect_timeout = 5                # seconds, for the first connection and every request
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class RedisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://", description="Redis URL")
    channel: str = Field(default="invokeai:events", min_length=1, max_length=200)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)


def load_settings(config: Any) -> RedisSettings:
    """Settings from the configuration, with errors naming the key."""
    return config.plugin_settings_as("redis", RedisSettings) if config is not None else RedisSettings()

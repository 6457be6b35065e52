"""The `[plugins.redis]` settings (pydantic only; never imports redis-py).

[plugins.redis]
url = "redis://127.0.0.1:6379/0"   # INVOKEAI_PLUGINS__REDIS__URL; a password goes in the URL
channel = "invokeai:events"        # processes sharing events use the same channel
connect_timeout = 5                # seconds, for the first connection and every request
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from invokeai_core.errors import ConfigError


class RedisSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://", description="Redis URL")
    channel: str = Field(default="invokeai:events", min_length=1, max_length=200)
    connect_timeout: float = Field(default=5.0, gt=0, le=120)


def load_settings(config: Any) -> RedisSettings:
    raw = config.plugin_settings("redis") if config is not None else {}
    try:
        return RedisSettings.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err.get("loc", ()))
        raise ConfigError(f"plugins.redis.{key}: {err.get('msg')}") from None

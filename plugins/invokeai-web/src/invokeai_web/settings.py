"""The plugin's settings: the `[plugins.web]` table of invokeai.toml, overridden by `invokeai serve` flags.

    [plugins.web]
    host = "127.0.0.1"        # bind address; anything but a loopback address needs access_token
    port = 9090               # 0 picks a free port (printed at start)
    access_token = ""         # when set, every request needs `Authorization: Bearer <token>`
                              # (16+ characters when host is not a loopback address)
    auth_failures_per_minute = 10  # wrong tokens one client address may try a minute (then 429)
    cors_origins = []         # browser origins allowed to call the API (CORS is off when empty)
    max_upload_mb = 50        # the largest request body (image uploads included): 413 past it
    max_image_pixels = 40000000  # uploads with more pixels are refused (decompression bombs)
    queue_processor = true    # run queued sessions in the server process
    client_backlog = 2000     # events queued for one Socket.IO client before it is disconnected
    webhook_secret = ""       # signs webhook notices (HMAC-SHA256); webhooks are off until it is set
    webhook_attempts = 5      # attempts per notice; waits webhook_backoff_seconds (2), then doubles
    webhook_timeout_seconds = 10
    webhook_allowed_hosts = []  # hosts webhooks may target ("hooks.example.com", "*.example.com")
    public_url = ""           # the server's URL as receivers reach it (absolute image URLs in notices)
    allow_plugin_install = false  # POST /plugins/install and /plugins/uninstall (needs access_token too)
    plugin_pip_options = []   # pip options for those, e.g. ["--no-index", "--find-links", "/srv/wheels"]

Environment variables work as for every key: `INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN=...`.
Light to import (pydantic only).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from invokeai_core import ConfigError

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost", "ip6-loopback"})


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field(default="127.0.0.1", description="Bind address (loopback by default)")
    port: int = Field(default=9090, ge=0, le=65535, description="TCP port; 0 picks a free one")
    access_token: str | None = Field(
        default=None, description="Bearer token every request must carry (required off loopback)"
    )
    auth_failures_per_minute: int = Field(
        default=10, ge=1, description="Wrong tokens one client address may present per minute before 429"
    )
    cors_origins: list[str] = Field(default_factory=list, description="Allowed browser origins (CORS off if empty)")
    max_upload_mb: float = Field(default=50.0, gt=0, description="The largest request body, in MiB")
    max_image_pixels: int = Field(default=40_000_000, gt=0, description="The most pixels an uploaded image may have")
    queue_processor: bool = Field(default=True, description="Run queued sessions in the server process")
    client_backlog: int = Field(
        default=2000,
        ge=10,
        description="Events queued for one Socket.IO client that stopped reading before it is disconnected "
        "(progress events are skipped for it past a quarter of this)",
    )

    webhook_secret: str | None = Field(
        default=None, description="The HMAC-SHA256 key webhook notices are signed with (webhooks are off without it)"
    )
    webhook_attempts: int = Field(default=5, ge=1, le=20, description="Attempts per webhook notice (1 = no retry)")
    webhook_backoff_seconds: float = Field(
        default=2.0, ge=0, le=3600, description="Wait before the 2nd attempt; doubled for each later one"
    )
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=300, description="Timeout of one attempt")
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts webhooks may target ('example.com', '*.example.com'); empty allows any host",
    )
    public_url: str | None = Field(
        default=None, description="The server's URL as others reach it (makes webhook image URLs absolute)"
    )
    allow_plugin_install: bool = Field(
        default=False,
        description="Allow POST /plugins/install and /plugins/uninstall (also needs access_token): they run pip",
    )
    plugin_pip_options: list[str] = Field(
        default_factory=list, description="pip options for API installs (where to look: --find-links, --index-url)"
    )

    @field_validator("access_token", mode="before")
    @classmethod
    def _token_text(cls, value: Any) -> Any:
        # `INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN=1234` arrives as the JSON number 1234
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # one origin, or a comma-separated list from the environment
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def check_bind(self, host: str | None = None) -> None:
        """Refuse to expose the API beyond this machine (on `host`, default `self.host`) without a
        strong enough access token. Every way to start the server calls it (`serve`, `ServerThread`),
        and the guard middleware refuses requests that reach a non-loopback address anyway."""
        host = self.host if host is None else host
        if is_loopback(host):
            return
        from invokeai_web.auth import MIN_TOKEN_LENGTH

        how = (
            "Set plugins.web.access_token (e.g. INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN) to a random string of at "
            f"least {MIN_TOKEN_LENGTH} characters, such as the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(24))'`, or bind 127.0.0.1"
        )
        if not self.access_token:
            raise ConfigError(
                f"refusing to bind {host}: the API would be reachable from other machines without authentication. {how}"
            )
        if len(self.access_token) < MIN_TOKEN_LENGTH:
            raise ConfigError(
                f"refusing to bind {host}: plugins.web.access_token has {len(self.access_token)} characters, "
                f"too few to resist guessing from other machines. {how}"
            )

    def public_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        for key in ("access_token", "webhook_secret"):
            if data.get(key):
                data[key] = "********"
        return data


def is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def load_web_settings(config: Any = None, overrides: Mapping[str, Any] | None = None) -> WebSettings:
    """`[plugins.web]` from the configuration, then `overrides` (CLI flags; None values are ignored).

    Errors name the key: `plugins.web.port: ...`."""
    raw: dict[str, Any] = dict(config.plugin_settings("web")) if config is not None else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key] = value
    try:
        return WebSettings.model_validate(raw)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(x) for x in err.get("loc", ()))
            if err.get("type") == "extra_forbidden":
                problems.append(f"unknown setting 'plugins.web.{key}'")
            else:
                problems.append(f"plugins.web.{key}: {err.get('msg')} (got {err.get('input')!r})")
        raise ConfigError("; ".join(problems)) from None

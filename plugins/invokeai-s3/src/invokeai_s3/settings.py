"""The `[plugins.s3]` settings: where images go and how the store is reached.

Credentials are never part of the configuration (nor of a graph): boto3 finds them through the
standard AWS chain (the `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`
environment variables, `AWS_PROFILE` or `profile` here naming a profile of `~/.aws/credentials`
and `~/.aws/config`, web identity, container and instance roles). This module imports pydantic
only, never boto3.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from invokeai_core import ConfigError

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig

#: The plugin's name: its entry point, its `[plugins.s3]` table and the `services.images` value.
PLUGIN_NAME = "s3"

#: Keys that would put a secret in invokeai.toml; refused with a pointer to the AWS chain.
CREDENTIAL_KEYS = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key_id",
        "secret_access_key",
        "session_token",
        "access_key",
        "secret_key",
        "secret",
        "credentials",
        "password",
    }
)

CREDENTIALS_HELP = (
    "credentials are never read from the configuration; use the standard AWS chain: the environment "
    "variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), or a profile of "
    "~/.aws/credentials named by AWS_PROFILE or plugins.s3.profile, or an instance/container role"
)

_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")


class S3Settings(BaseModel):
    """`[plugins.s3]` in invokeai.toml (or `INVOKEAI_PLUGINS__S3__<KEY>` in the environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    bucket: str = Field(description="The bucket that holds the images (it must exist)")
    prefix: str = Field(
        default="",
        description="Key prefix under which `images/` and `thumbnails/` are kept, e.g. 'invokeai/' "
        "(lets several installations share one bucket)",
    )
    region: str | None = Field(default=None, description="The bucket's region (default: the AWS chain's region)")
    endpoint_url: str | None = Field(
        default=None,
        description="The store's URL for S3-compatible stores other than AWS (MinIO, R2, Ceph, ...), "
        "e.g. 'http://127.0.0.1:9000'",
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto", description="'path' (http://host/bucket/key; most self-hosted stores) or 'virtual'"
    )
    profile: str | None = Field(default=None, description="A profile of ~/.aws/credentials and ~/.aws/config")
    urls: Literal["proxy", "presigned"] = Field(
        default="proxy",
        description="How image files reach clients: 'proxy' (the API reads and serves them) or 'presigned' "
        "(the API redirects to a time-limited URL of the store; the store must be reachable by clients)",
    )
    presigned_expires: int = Field(
        default=3600, ge=1, le=604800, description="Seconds a presigned URL stays valid (at most 7 days)"
    )
    retry_mode: Literal["standard", "adaptive", "legacy"] = Field(
        default="standard", description="botocore's retry mode for transient errors (exponential backoff)"
    )
    max_attempts: int = Field(
        default=5, ge=1, le=20, description="Attempts per request, the first included, before an error is final"
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a connection")
    read_timeout: float = Field(default=30.0, gt=0, description="Seconds to wait for data on a connection")
    collect_orphans: bool = Field(
        default=True,
        description="List the bucket's images when the queue processor starts, to remove files a crash "
        "left without a record (turn off for very large buckets)",
    )

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET_RE.match(value):
            raise ValueError(
                "a bucket name is 3-255 letters, digits, '.', '_' or '-', starting and ending with a letter "
                "or digit (AWS: 3-63 lower-case letters, digits, '.' and '-')"
            )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip().lstrip("/")
        if any(part in (".", "..") for part in value.split("/")[:-1]) or "//" in value:
            raise ValueError("the prefix may not contain '.' or '..' segments or '//'")
        if value and not value.endswith("/"):
            value += "/"
        return value

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", value):
            raise ValueError("the endpoint URL must look like http://host:port or https://host")
        return value

    @field_validator("region", "profile")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @classmethod
    def from_config(cls, config: InvokeAIConfig | None) -> S3Settings:
        """The settings of `config`'s `[plugins.s3]` table; a `ConfigError` naming the key, where it
        came from and what to do when they are missing or wrong."""
        raw: dict[str, Any] = config.plugin_settings(PLUGIN_NAME) if config is not None else {}
        return cls.parse(raw, source=(lambda key: config.source_of(key)) if config is not None else None)

    @classmethod
    def parse(cls, raw: dict[str, Any], *, source: Any = None) -> S3Settings:
        def where(key: str) -> str:
            return f" (from {source(key)})" if source is not None else ""

        for key in raw:
            if key.lower() in CREDENTIAL_KEYS:
                full = f"plugins.{PLUGIN_NAME}.{key}"
                raise ConfigError(f"configuration key '{full}'{where(full)}: {CREDENTIALS_HELP}")
        if "bucket" not in raw:
            raise ConfigError(
                f'images = "{PLUGIN_NAME}" needs a bucket: set bucket in the [plugins.{PLUGIN_NAME}] table of '
                f"invokeai.toml (or INVOKEAI_PLUGINS__S3__BUCKET), and endpoint_url for stores other than AWS"
            )
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                key = f"plugins.{PLUGIN_NAME}." + ".".join(str(x) for x in err.get("loc", ()))
                if err.get("type") == "extra_forbidden":
                    known = ", ".join(cls.model_fields)
                    problems.append(f"unknown configuration key '{key}'{where(key)} (known: {known})")
                else:
                    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
                    problems.append(f"configuration key '{key}'{where(key)}: {msg} (got {err.get('input')!r})")
            raise ConfigError("; ".join(problems)) from None

"""Configuration: the root folder, `invokeai.toml`, `INVOKEAI_*` environment variables and CLI flags.

Precedence, lowest to highest: built-in defaults < `<root>/invokeai.toml` < environment < CLI flags.
Nested keys use a dot on the CLI (`-o services.images=s3`) and a double underscore in the
environment (`INVOKEAI_SERVICES__IMAGES=s3`). Plugins keep their settings in their own table,
`[plugins.<name>]`, read with `config.plugin_settings("<name>")`. An unknown key in the file or on
the command line is an error naming the key and where it came from.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from invokeai_core.errors import ConfigError

CONFIG_FILE_NAME = "invokeai.toml"
#: Environment variables with the INVOKEAI_ prefix that are not configuration keys.
NON_CONFIG_ENV = frozenset({"INVOKEAI_ROOT", "INVOKEAI_LOAD_PLUGINS", "INVOKEAI_STRICT_PLUGINS", "INVOKEAI_CONFIG"})


def default_root() -> Path:
    return Path.home() / "invokeai"


class ServicesConfig(BaseModel):
    """Which implementation serves each service kind (names registered through `register_services`)."""

    model_config = ConfigDict(extra="allow")

    images: str = Field(default="local", description="Image files: 'local' folder, or e.g. 's3'")
    image_records: str = Field(default="memory", description="Image records store")
    objects: str = Field(default="memory", description="Large objects (latents, conditioning): memory with disk spill")
    sessions: str = Field(default="memory", description="Sessions store")
    queue: str = Field(default="memory", description="Session queue")
    events: str = Field(default="memory", description="Event bus: in-process")
    cache: str = Field(default="memory", description="Invocation output cache: in-memory LRU")

    def selected(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump().items()}


class PluginsConfig(BaseModel):
    """`[plugins]`: a blocklist, plus one table of settings per plugin (`[plugins.s3]`)."""

    model_config = ConfigDict(extra="allow")

    block: list[str] = Field(default_factory=list, description="Entry-point names of plugins not to load")


class InvokeAIConfig(BaseModel):
    """The effective configuration."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    root: Path = Field(default_factory=default_root, description="The root folder (data, images, database)")
    log_level: str = Field(default="info", description="debug, info, warning or error")
    cache_size: int = Field(default=512, ge=0, description="Output cache entries (0 disables the cache)")
    objects_memory_items: int = Field(default=64, ge=0, description="Objects kept in memory before spilling to disk")
    queue_workers: int = Field(default=1, ge=1, description="Session processor worker threads")
    max_queue_size: int = Field(default=10000, ge=1, description="The most pending items a queue may hold")
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)

    #: Where each dotted key's value came from ("default", "file", "env", "cli").
    sources: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """The `[plugins.<name>]` table (empty if absent)."""
        value = (self.plugins.model_extra or {}).get(name, {})
        return dict(value) if isinstance(value, Mapping) else {}

    def public_dict(self) -> dict[str, Any]:
        """The configuration with secrets (keys named like token, secret, password, key) masked."""
        return _mask(self.model_dump(mode="json"))


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if value and any(s in key.lower() for s in ("token", "secret", "password", "access_key")):
        return "********"
    return value


def _parse_scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, sources: dict[str, str], source: str) -> None:
    parts = [p for p in dotted.split(".") if p]
    if not parts:
        raise ConfigError(f"empty configuration key from {source}")
    node = target
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
    sources[".".join(parts)] = source


def _flatten(prefix: str, data: Mapping[str, Any], out: dict[str, Any]) -> None:
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, Mapping):
            _flatten(key, v, out)
        else:
            out[key] = v


def load_config(
    *,
    root: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> InvokeAIConfig:
    """Build the effective configuration. `overrides` are CLI flags as dotted keys."""
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    data: dict[str, Any] = {}
    root_path = Path(root) if root else Path(env["INVOKEAI_ROOT"]) if env.get("INVOKEAI_ROOT") else default_root()
    sources["root"] = "cli" if root else "env" if env.get("INVOKEAI_ROOT") else "default"
    file_path = Path(config_file) if config_file else Path(env["INVOKEAI_CONFIG"]) if env.get("INVOKEAI_CONFIG") else root_path / CONFIG_FILE_NAME
    if file_path.exists():
        try:
            file_data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError) as e:
            raise ConfigError(f"{file_path}: cannot read the configuration file: {e}") from None
        flat: dict[str, Any] = {}
        _flatten("", file_data, flat)
        for k, v in flat.items():
            _set_dotted(data, k, v, sources, f"file {file_path}")
    elif config_file:
        raise ConfigError(f"{file_path}: the configuration file does not exist")
    for name, raw in env.items():
        if not name.startswith("INVOKEAI_") or name in NON_CONFIG_ENV:
            continue
        dotted = name[len("INVOKEAI_") :].lower().replace("__", ".")
        _set_dotted(data, dotted, _parse_scalar(raw), sources, f"env {name}")
    for k, v in (overrides or {}).items():
        _set_dotted(data, k, v, sources, "cli")
    data["root"] = str(root_path)
    try:
        config = InvokeAIConfig.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(x) for x in err.get("loc", ()))
        where = sources.get(key, "default")
        if err.get("type") == "extra_forbidden":
            raise ConfigError(f"unknown configuration key '{key}' (from {where})") from None
        raise ConfigError(f"configuration key '{key}' (from {where}): {err.get('msg')}") from None
    config.sources = sources
    return config

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
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from invokeai_core.errors import ConfigError

TSettings = TypeVar("TSettings", bound=BaseModel)

CONFIG_FILE_NAME = "invokeai.toml"
#: Environment variables with the INVOKEAI_ prefix that are not configuration keys.
NON_CONFIG_ENV = frozenset(
    {
        "INVOKEAI_ROOT",
        "INVOKEAI_LOAD_PLUGINS",
        "INVOKEAI_STRICT_PLUGINS",
        "INVOKEAI_CONFIG",
        "INVOKEAI_CRASH_AT",
        "INVOKEAI_REQUIRE_ALL_TESTS",
    }
)


def default_root() -> Path:
    return Path.home() / "invokeai"


class ServicesConfig(BaseModel):
    """Which implementation serves each service kind (names registered through `register_services`)."""

    model_config = ConfigDict(extra="allow")

    images: str = Field(default="local", description="Image files: 'local' folder, or e.g. 's3'")
    image_records: str = Field(default="sqlite", description="Image records store: 'sqlite' (the database) or 'memory'")
    objects: str = Field(default="memory", description="Large objects (latents, conditioning): memory with disk spill")
    sessions: str = Field(default="sqlite", description="Sessions store: 'sqlite' (the database) or 'memory'")
    queue: str = Field(default="sqlite", description="Session queue: 'sqlite' (the database) or 'memory'")
    events: str = Field(default="memory", description="Event bus: in-process")
    cache: str = Field(default="memory", description="Invocation output cache: in-memory LRU")
    workflows: str = Field(default="sqlite", description="Workflow library: 'sqlite' (the database) or 'memory'")

    def selected(self) -> dict[str, str]:
        return {k: str(v) for k, v in self.model_dump().items()}


class LimitsConfig(BaseModel):
    """`[limits]`: how much work one node may do, checked before the work. A graph that asks for more is
    refused before anything runs (422 on the API, exit status 2 on the CLI) naming the node and field;
    a value that only arrives through an edge fails that node, with the same message."""

    model_config = ConfigDict(extra="forbid")

    collection_items: int = Field(
        default=100_000, ge=1, description="The most items a collection node (range, string_split, ...) may produce"
    )
    string_length: int = Field(
        default=1_000_000, ge=1, description="The most characters a string node may take or produce"
    )
    integer_bits: int = Field(
        default=4096,
        ge=64,
        le=14_000,
        description="The most bits an integer result may have (4096 bits is about 1,233 digits)",
    )
    image_pixels: int = Field(
        default=40_000_000, ge=1, description="The most pixels (width x height) an image node may create"
    )
    regex_seconds: float = Field(
        default=1.0, gt=0, description="The longest a regular expression may run on one string (then the node fails)"
    )
    output_mb: float = Field(
        default=16.0, gt=0, le=512, description="The largest node output, in MiB of JSON (a larger one fails the node)"
    )
    graph_nodes: int = Field(
        default=100_000, ge=1, description="The most nodes one graph (or session) may have; more is refused whole"
    )

    @property
    def output_bytes(self) -> int:
        return int(self.output_mb * 1024 * 1024)


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
    cache_max_mb: float = Field(
        default=256.0,
        ge=0,
        description="Output cache size in MiB of resident memory (least recently used evicted first; 0 disables)",
    )
    objects_memory_items: int = Field(default=64, ge=0, description="Objects kept in memory before spilling to disk")
    queue_workers: int = Field(default=1, ge=1, description="Worker threads of the session and queue processors")
    max_queue_size: int = Field(default=10000, ge=1, description="The most pending items a queue may hold")
    queue_processor: bool = Field(
        default=False,
        description="Run queued sessions in this process when the Invoker starts (servers turn it on)",
    )
    queue_requeue_on_crash: bool = Field(
        default=False,
        description="Put items that were running when the process died back in the queue (resuming their "
        "sessions) instead of failing them",
    )
    db_path: Path = Field(
        default=Path("invokeai.db"), description="The SQLite database file (relative paths are under the root folder)"
    )
    db_busy_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for another process's lock on the database before failing"
    )
    session_commit_ms: float = Field(
        default=50.0,
        ge=0,
        le=10_000,
        description="Group commit of node results: the SQLite session store commits the nodes completed within "
        "this many milliseconds (or 256 of them) in one transaction; a crash re-runs at most those. 0 commits "
        "every node on its own",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    services: ServicesConfig = Field(default_factory=ServicesConfig)
    plugins: PluginsConfig = Field(default_factory=PluginsConfig)

    #: Where each dotted key's value came from ("default", "file", "env", "cli").
    sources: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    @property
    def outputs_dir(self) -> Path:
        return self.root / "outputs"

    @property
    def db_file(self) -> Path:
        """The database file: `db_path`, under the root folder unless absolute."""
        path = self.db_path.expanduser()
        return path if path.is_absolute() else self.root / path

    def plugin_settings(self, name: str) -> dict[str, Any]:
        """The `[plugins.<name>]` table (empty if absent)."""
        value = (self.plugins.model_extra or {}).get(name, {})
        return dict(value) if isinstance(value, Mapping) else {}

    def plugin_settings_as(self, name: str, model: type[TSettings]) -> TSettings:
        """The `[plugins.<name>]` table validated as `model`; a `ConfigError` naming the first bad key
        (`plugins.<name>.<key>: <why>`)."""
        try:
            return model.model_validate(self.plugin_settings(name))
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(x) for x in err.get("loc", ()))
            raise ConfigError(f"plugins.{name}.{key}: {err.get('msg')}") from None

    def source_of(self, key: str) -> str:
        """Where a dotted key's effective value came from: "default", "cli", "env NAME" or "file PATH"."""
        return _source_of(key, self.sources)

    def public_dict(self) -> dict[str, Any]:
        """The configuration with secrets (keys named like token, secret, password, key) masked."""
        return _mask(self.model_dump(mode="json"))


#: Substrings of a key name that mark its value as a secret in `public_dict()`.
SECRET_MARKERS = (
    "token",
    "secret",
    "password",
    "passwd",
    "access_key",
    "api_key",
    "private_key",
    "credential",
)


def _is_secret(key: str) -> bool:
    k = key.lower()
    return any(s in k for s in SECRET_MARKERS)


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if value not in (None, "", [], {}) and _is_secret(key):
        return "********"
    return value


def _annotation_at(dotted: str) -> Any:
    """The declared type of a dotted configuration key, or None for keys no model declares."""
    model: Any = InvokeAIConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            if model is ServicesConfig and i == len(parts) - 1:
                return str  # a plugin's own service kind: the value is an implementation name
            return None
        model = info.annotation
    return model


def _parse_env_value(dotted: str, text: str) -> Any:
    """An environment value: JSON for structured values, the plain text for string settings."""
    if _annotation_at(dotted) is str:
        return text
    return _parse_scalar(text)


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


def _source_of(key: str, sources: Mapping[str, str]) -> str:
    """Where a (possibly nested, e.g. `plugins.block.0`) key's value came from."""
    parts = key.split(".")
    while parts:
        found = sources.get(".".join(parts))
        if found is not None:
            return found
        parts.pop()
    return "default"


def load_config(
    *,
    root: str | Path | None = None,
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> InvokeAIConfig:
    """Build the effective configuration. `overrides` are CLI flags as dotted keys.

    The root folder comes from `root=` (or a `root` override), else `INVOKEAI_ROOT`, else `~/invokeai`.
    `invokeai.toml` is read from the root folder unless `config_file=` or `INVOKEAI_CONFIG` names
    another file; only such an explicitly named file may itself set `root`.
    """
    env = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    sources: dict[str, str] = {}
    data: dict[str, Any] = {}
    override_root = overrides.pop("root", None)
    if root is None and override_root is not None:
        root = override_root
    if root:
        root_path: Path | None = Path(root).expanduser()
        sources["root"] = "cli"
    elif env.get("INVOKEAI_ROOT"):
        root_path = Path(env["INVOKEAI_ROOT"]).expanduser()
        sources["root"] = "env INVOKEAI_ROOT"
    else:
        root_path = None
    explicit_file = config_file or env.get("INVOKEAI_CONFIG") or None
    file_path = Path(explicit_file).expanduser() if explicit_file else (root_path or default_root()) / CONFIG_FILE_NAME
    if file_path.exists():
        try:
            file_data = tomllib.loads(file_path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{file_path}: cannot read the configuration file: {e}") from None
        source = f"file {file_path}"
        if "root" in file_data:
            file_root = file_data.pop("root")
            if not explicit_file:
                raise ConfigError(
                    f"'root' cannot be set in {file_path} (from {source}): that file lives in the "
                    "root folder; use --root or INVOKEAI_ROOT"
                )
            if root_path is None:
                if not isinstance(file_root, str):
                    raise ConfigError(f"configuration key 'root' (from {source}): must be a path string")
                root_path = (file_path.parent / Path(file_root).expanduser()).resolve()
                sources["root"] = source
        flat: dict[str, Any] = {}
        _flatten("", file_data, flat)
        for k, v in flat.items():
            if k.split(".")[0] == "sources":
                raise ConfigError(f"unknown configuration key '{k}' (from {source})")
            _set_dotted(data, k, v, sources, source)
    elif explicit_file:
        raise ConfigError(f"{file_path}: the configuration file does not exist")
    if root_path is None:
        root_path = default_root()
        sources["root"] = "default"
    for name, raw in sorted(env.items()):
        if not name.startswith("INVOKEAI_") or name in NON_CONFIG_ENV:
            continue
        dotted = name[len("INVOKEAI_") :].lower().replace("__", ".")
        if dotted.split(".")[0] == "sources":
            raise ConfigError(f"unknown configuration key '{dotted}' (from env {name})")
        _set_dotted(data, dotted, _parse_env_value(dotted, raw), sources, f"env {name}")
    for k, v in overrides.items():
        if str(k).split(".")[0] == "sources":
            raise ConfigError(f"unknown configuration key '{k}' (from cli)")
        if _annotation_at(str(k)) is str and isinstance(v, int | float) and not isinstance(v, bool):
            v = str(v)  # `-o services.images=2` parses as JSON 2, but the setting is a name
        _set_dotted(data, k, v, sources, "cli")
    data["root"] = str(root_path)
    try:
        config = InvokeAIConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(x) for x in err.get("loc", ()))
            where = _source_of(key, sources)
            if err.get("type") == "extra_forbidden":
                problems.append(f"unknown configuration key '{key}' (from {where})")
            else:
                problems.append(
                    f"configuration key '{key}' (from {where}): {err.get('msg')} (got {err.get('input')!r})"
                )
        raise ConfigError("; ".join(problems)) from None
    config.sources = sources
    return config

"""This pack's settings (`[plugins.nodes]` in `invokeai.toml`) and the file-system fence they define.

Only `image_load` and `save_image` touch files outside the image service, and only inside the
folders of `allowed_paths`: a graph may come from anyone who can reach the API, so it must not be
able to read `/etc` or write over the user's files. Each is read when a node runs, so a changed
`invokeai.toml` applies to the next session of a restarted server without code changes.

    [plugins.nodes]
    allowed_paths = ["/data/pictures", "exports"]   # relative paths are under the root folder

Without the setting, the allowed folders are `<root>/inputs` and `<root>/exports`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig

PLUGIN_NAME = "nodes"
ALLOWED_PATHS_SETTING = f"plugins.{PLUGIN_NAME}.allowed_paths"
DEFAULT_ALLOWED_PATHS = ("inputs", "exports")
_HOW_TO_SET = (
    f"set {ALLOWED_PATHS_SETTING} in invokeai.toml ([plugins.{PLUGIN_NAME}] allowed_paths = [...]) "
    f"or INVOKEAI_PLUGINS__{PLUGIN_NAME.upper()}__ALLOWED_PATHS"
)


class SettingsError(ValueError):
    """`[plugins.nodes]` holds a key or value this pack does not understand."""


class PathNotAllowedError(PermissionError):
    """A node was asked to read or write a file outside the allowed folders."""


class NodesSettings(BaseModel):
    """The `[plugins.nodes]` table."""

    model_config = ConfigDict(extra="forbid")

    allowed_paths: list[str] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_PATHS),
        description="Folders that image_load may read and save_image may export to (relative: under the root)",
    )


def load_settings(config: InvokeAIConfig) -> NodesSettings:
    """Parse `[plugins.nodes]`; an unknown key or a bad value is an error naming the key."""
    raw = config.plugin_settings(PLUGIN_NAME)
    if isinstance(raw.get("allowed_paths"), str):
        raw["allowed_paths"] = [raw["allowed_paths"]]  # one folder, as an environment variable gives it
    try:
        return NodesSettings.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise SettingsError(
                f"unknown setting 'plugins.{PLUGIN_NAME}.{key}' (known: {', '.join(NodesSettings.model_fields)})"
            ) from None
        raise SettingsError(f"setting 'plugins.{PLUGIN_NAME}.{key}': {err['msg']} (got {err['input']!r})") from None


def allowed_folders(config: InvokeAIConfig) -> list[Path]:
    """The allowed folders as absolute, symlink-free paths."""
    root = Path(config.root).expanduser()
    return [(root / Path(p).expanduser()).resolve() for p in load_settings(config).allowed_paths]


def resolve_allowed(config: InvokeAIConfig, path: str, *, node: str, field: str) -> Path:
    """`path` made absolute (relative paths are under the root folder) and symlinks resolved, if it
    lies inside an allowed folder; otherwise `PathNotAllowedError` naming the setting to change.

    Resolving first means `..` and symlinks cannot lead out of an allowed folder.
    """
    if not path.strip():
        raise ValueError(f"{node}: input '{field}' is empty; give a file path")
    target = (Path(config.root).expanduser() / Path(path).expanduser()).resolve()
    folders = allowed_folders(config)
    if any(target.is_relative_to(folder) for folder in folders):
        return target
    listed = ", ".join(str(f) for f in folders) or "none"
    raise PathNotAllowedError(
        f"{node}: input '{field}' ({path!r}, resolved to {target}) is outside the allowed folders ({listed}); "
        f"to allow it, {_HOW_TO_SET}"
    )

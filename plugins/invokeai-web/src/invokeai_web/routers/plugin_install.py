"""Installing and removing node packs over the API: off by default.

`POST /plugins/install`, `POST /plugins/uninstall` and `GET /plugins/check` run the real CLI
(`invokeai plugins install|uninstall|check --json`, in a subprocess of the server's own interpreter),
so the API refuses exactly what the CLI refuses: a change to a package an installed pack requires,
or to torch (409, naming the package, the pack that requires it and the pack that wants it),
unless `allow_changes`. Install and uninstall answer 403 unless the server has
`[plugins.web] allow_plugin_install = true` **and** an `access_token` (which every request must then
carry): installing a package runs its code, so it is never open to anyone who can reach the port.
Specs must be plain requirements (`name`, `name>=1.2`): no URLs, paths or pip options; where pip looks
comes from `[plugins.web] plugin_pip_options` (e.g. `["--no-index", "--find-links", "/srv/wheels"]`).
A newly installed plugin is loaded when the server restarts (`restart_required`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, field_validator

from invokeai_web.dependencies import InvokerDep, SettingsDep
from invokeai_web.errors import error_responses
from invokeai_web.settings import WebSettings

router = APIRouter(
    prefix="/plugins",
    tags=["app"],
    responses=error_responses(
        {
            403: "Installing plugins over the API is off (plugins.web.allow_plugin_install) or needs an access token",
            409: "Refused: the change would alter a package an installed pack requires, or torch; or another "
            "install is running",
            502: "pip failed while installing or removing",
        }
    ),
)
_lock = threading.Lock()
#: The longest pip may take for one request.
PIP_TIMEOUT_S = 900

Spec = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class InstallRequest(BaseModel):
    specs: list[Spec] = Field(min_length=1, max_length=20, description="Requirements: `name` or `name>=1.2`")
    allow_changes: bool = Field(default=False, description="Allow changes to packages installed packs require")
    dry_run: bool = Field(default=False, description="Only show what would change")

    @field_validator("specs")
    @classmethod
    def _plain_requirements(cls, specs: list[str]) -> list[str]:
        from packaging.requirements import InvalidRequirement, Requirement

        for spec in specs:
            try:
                req = Requirement(spec)
            except InvalidRequirement as e:
                raise ValueError(f"'{spec}' is not a requirement: {e}") from None
            if req.url is not None or spec.startswith("-"):
                raise ValueError(f"'{spec}': give a name and a version range, not a URL, path or option")
        return specs


class UninstallRequest(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    allow_changes: bool = False
    dry_run: bool = False


class PackageChange(BaseModel):
    name: str
    kind: str = Field(description="add, upgrade, downgrade or reinstall")
    to_version: str
    from_version: str | None = None
    required_by: list[str] = Field(description="Installed packs (or torch) that require the package")
    wanted_by: list[str] = Field(description="The new packages that want this version")


class InstallResult(BaseModel):
    action: str
    specs: list[str]
    changes: list[PackageChange]
    refused: list[PackageChange]
    installed: bool
    plugins: list[dict[str, Any]] = Field(description="The new plugins' status, as GET /plugins shows it")
    restart_required: bool = Field(description="Whether a restart is needed to load what changed")


class UninstallResult(BaseModel):
    action: str
    distribution: str
    version: str | None
    required_by: list[str]
    removed: bool
    restart_required: bool


class PackProblem(BaseModel):
    pack: str
    version: str
    problem: str


class CheckResult(BaseModel):
    ok: bool = Field(description="No installed pack has a conflicting requirement")
    problems: list[PackProblem]
    environment: list[str] = Field(description="Other problems `pip check` found, not about packs")


def _require_enabled(settings: WebSettings) -> None:
    if not settings.allow_plugin_install:
        raise HTTPException(
            403,
            "installing plugins over the API is off: set [plugins.web] allow_plugin_install = true (and an "
            "access_token), or use `invokeai plugins install` on the server",
        )
    if not settings.access_token:
        raise HTTPException(403, "installing plugins over the API needs plugins.web.access_token to be set")


def _run_cli(invoker: Any, settings: WebSettings, *args: str) -> tuple[int, dict[str, Any] | None, str]:
    command = [sys.executable, "-m", "invokeai_core.cli.main", "--root", str(invoker.config.root), "plugins", *args]
    try:
        res = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise HTTPException(502, f"pip did not finish within {PIP_TIMEOUT_S} s") from None
    try:
        data = json.loads(res.stdout) if res.stdout.strip() else None
    except json.JSONDecodeError:
        data = None
    message = res.stderr.strip().splitlines()[-1].removeprefix("invokeai: error: ") if res.stderr.strip() else ""
    return res.returncode, data, message


def _answer(code: int, data: dict[str, Any] | None, message: str, what: str) -> Any:
    if code == 0 and data is not None:
        return data
    if code == 2 and data is not None and data.get("refused"):
        detail = [
            {"type": "PluginChangeRefused", "loc": ["body", "specs"], "msg": message, **change}
            for change in data["refused"]
        ]
        return JSONResponse({"detail": detail}, status_code=409)
    if code == 2 and data is not None and data.get("required_by"):
        detail = [{"type": "PluginChangeRefused", "loc": ["body", "name"], "msg": message, **data}]
        return JSONResponse({"detail": detail}, status_code=409)
    if code == 2:
        loc = ["body", "specs" if what == "install" else "name"]
        return JSONResponse({"detail": [{"type": "PluginInstallError", "loc": loc, "msg": message}]}, status_code=422)
    raise HTTPException(502, message or f"pip {what} failed")


@router.post(
    "/install",
    response_model=InstallResult,
    summary="Install node packs (off by default)",
    responses={422: {"description": "A spec is malformed or cannot be resolved"}},
)
def install_plugins(invoker: InvokerDep, settings: SettingsDep, body: InstallRequest) -> Any:
    """Resolve with pip's own dry run, refuse changes to what installed packs require (409) unless
    `allow_changes`, install, and answer the new plugins' status."""
    _require_enabled(settings)
    args = ["install", "--json", *(f"--pip-arg={a}" for a in settings.plugin_pip_options)]
    args += ["--allow-changes"] * body.allow_changes + ["--dry-run"] * body.dry_run
    if not _lock.acquire(blocking=False):
        raise HTTPException(409, "another plugin install or removal is running")
    try:
        code, data, message = _run_cli(invoker, settings, *args, "--", *body.specs)
    finally:
        _lock.release()
    result = _answer(code, data, message, "install")
    if isinstance(result, dict):
        result["restart_required"] = bool(result.get("installed"))
    return result


@router.post("/uninstall", response_model=UninstallResult, summary="Uninstall a node pack (off by default)")
def uninstall_plugin(invoker: InvokerDep, settings: SettingsDep, body: UninstallRequest) -> Any:
    """Remove a pack by plugin or distribution name; refused (409) while another installed pack
    requires it, unless `allow_changes`."""
    _require_enabled(settings)
    args = ["uninstall", "--json", *["--allow-changes"] * body.allow_changes, *["--dry-run"] * body.dry_run]
    if not _lock.acquire(blocking=False):
        raise HTTPException(409, "another plugin install or removal is running")
    try:
        code, data, message = _run_cli(invoker, settings, *args, body.name)
    finally:
        _lock.release()
    result = _answer(code, data, message, "uninstall")
    if isinstance(result, dict):
        result["restart_required"] = bool(result.get("removed"))
    return result


@router.get("/check", response_model=CheckResult, summary="Installed packs whose requirements conflict")
def check_plugins(invoker: InvokerDep, settings: SettingsDep) -> Any:
    """`invokeai plugins check`: what `pip check` finds about installed packs, and each pack's
    `invokeai-core` range against the running version. Read-only, always available."""
    _, data, message = _run_cli(invoker, settings, "check", "--json")
    if data is None:
        raise HTTPException(502, message or "pip check failed")
    return data

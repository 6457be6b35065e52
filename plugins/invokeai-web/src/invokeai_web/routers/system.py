"""The app and its plugins: versions, the non-secret configuration, loaded plugins and their status."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from invokeai_core import __version__ as core_version
from invokeai_web import __version__ as web_version
from invokeai_web.dependencies import InvokerDep, SettingsDep

router = APIRouter(tags=["app"])


class AppVersion(BaseModel):
    version: str = Field(description="invokeai-core's version")
    web_version: str = Field(description="invokeai-web's version")
    plugins: dict[str, str | None] = Field(description="Loaded plugins and their versions")


class AppConfig(BaseModel):
    config: dict[str, Any] = Field(description="The effective configuration, secrets masked")
    sources: dict[str, str] = Field(description="Where each key that is not a default came from")
    web: dict[str, Any] = Field(description="The server's own settings, the token masked")


class PluginOut(BaseModel):
    name: str
    module: str
    dist: str | None = None
    version: str | None = None
    status: str = Field(description="loaded, failed, blocked or disabled")
    error: str | None = None
    hint: str | None = None
    hooks: list[str]
    nodes: list[str]
    services: list[str]
    builtin: bool
    routes_error: str | None = Field(default=None, description="Why its `register_routes` failed, if it did")


@router.get("/app/version", response_model=AppVersion, summary="Versions")
def app_version(invoker: InvokerDep) -> dict[str, Any]:
    plugins = {p.name: p.version for p in invoker.host.plugins.values() if p.status == "loaded"}
    return {"version": core_version, "web_version": web_version, "plugins": plugins}


@router.get("/app/config", response_model=AppConfig, summary="The configuration (no secrets)")
def app_config(invoker: InvokerDep, settings: SettingsDep) -> dict[str, Any]:
    config = invoker.config
    sources = {k: v.split(" ", 1)[0] for k, v in config.sources.items()}  # no file paths or variable values
    return {"config": config.public_dict(), "sources": sources, "web": settings.public_dict()}


@router.get("/plugins", response_model=list[PluginOut], summary="Plugins and their status")
def list_plugins(invoker: InvokerDep, request: Request) -> list[dict[str, Any]]:
    route_errors: dict[str, str] = getattr(request.app.state, "route_errors", {})
    out = []
    for info in invoker.host.plugin_list():
        data = info.to_dict()
        data["routes_error"] = route_errors.get(info.name)
        out.append(data)
    return out

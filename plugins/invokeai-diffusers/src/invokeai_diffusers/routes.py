"""The `models` routes of the HTTP API (added to invokeai-web's app through `register_routes`).

`GET /api/v1/models`, `POST /api/v1/models` (install from a local folder or checkpoint on the server), `GET` and
`DELETE /api/v1/models/{name}` (removes the record; the files stay). Imported only by the hook,
and only when invokeai-web builds its app.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException, Path, Request
from pydantic import BaseModel, Field

from invokeai_diffusers.models.manager import ModelInstallError, ModelManager, UnknownModelError
from invokeai_diffusers.models.records import ModelRecord, PredictionType

ModelName = Annotated[str, Path(min_length=1, max_length=200, description="The installed model's name")]


class ModelAdd(BaseModel):
    path: str = Field(
        min_length=1, max_length=4096, description="A diffusers folder or a .safetensors checkpoint on the server"
    )
    name: str | None = Field(default=None, max_length=200, description="The name (default: the folder or file name)")
    description: str = Field(default="", max_length=2000)
    config: str | None = Field(
        default=None,
        max_length=4096,
        description="Checkpoints of non-standard size: a diffusers folder (configs only) to load it with",
    )
    prediction_type: PredictionType | None = Field(
        default=None, description="Override the scheduler's prediction type (v_prediction for SD 2.x 768 models)"
    )


def refused(status: int, field: str | None, msg: str) -> HTTPException:
    """An error answer whose detail names the field, shaped like the API's other errors."""
    loc = ["body", field] if field else ["body"]
    return HTTPException(status, [{"type": "ModelInstallError", "loc": loc, "msg": msg, "field": field}])


def _manager(request: Request) -> ModelManager:
    manager: ModelManager = request.app.state.invoker.services.get(ModelManager)
    return manager


def _api_path(manager: ModelManager, raw: str, field: str) -> str:
    """`raw` as an absolute path inside the folders the API may install from (`api_model_folders`;
    relative paths are taken under the models folder); 403 otherwise, without saying whether it
    exists or what it is. `api_any_path` lifts the fence."""
    if manager.settings.api_any_path:
        return raw
    if "\x00" in raw or raw.startswith("~"):
        raise refused(422, field, f"{field}: give an absolute path, or one relative to the models folder")
    try:
        resolved = (manager.models_dir / raw).resolve()  # an absolute `raw` replaces models_dir
    except (OSError, RuntimeError):
        resolved = None
    if resolved is None or not any(resolved.is_relative_to(f) for f in manager.api_folders()):
        raise refused(
            403,
            field,
            f"{field}: the API installs models only from the server's model folders (plugins.diffusers."
            "models_dir and api_model_folders); use `invokeai models add` on the server for other paths",
        )
    return str(resolved)


def build_router() -> APIRouter:
    router = APIRouter(prefix="/models", tags=["models"])

    @router.get("", response_model=list[ModelRecord], summary="List installed models")
    def list_models(request: Request) -> list[ModelRecord]:
        return _manager(request).list()

    @router.post(
        "",
        status_code=201,
        response_model=ModelRecord,
        summary="Install a model",
        responses={409: {"description": "A model of that name is installed"}},
    )
    def add_model(request: Request, body: ModelAdd) -> ModelRecord:
        """Install a model from a diffusers folder or a single-file checkpoint on the server (recorded in
        place, never copied, nothing downloaded), inside the server's model folders (403 elsewhere).
        422 says why a path cannot be installed; 409 if the name is taken."""
        manager = _manager(request)
        path = _api_path(manager, body.path, "path")
        config = _api_path(manager, body.config, "config") if body.config is not None else None
        try:
            return manager.add(
                path,
                name=body.name,
                description=body.description,
                config=config,
                prediction_type=body.prediction_type,
            )
        except ModelInstallError as e:
            taken = "already installed" in str(e)
            raise refused(409 if taken else 422, "name" if taken else "path", str(e)) from None
        except (OSError, ValueError) as e:  # e.g. a path with a NUL byte, or one that cannot be read
            raise refused(422, "path", f"{body.path[:200]!r} cannot be installed: {e}") from None

    @router.get("/{name}", response_model=ModelRecord, summary="Get a model")
    def get_model(request: Request, name: ModelName) -> ModelRecord:
        try:
            return _manager(request).get(name)
        except UnknownModelError as e:
            raise HTTPException(404, str(e)) from None

    @router.delete("/{name}", response_model=ModelRecord, summary="Remove a model")
    def remove_model(request: Request, name: ModelName) -> ModelRecord:
        """Forget the model (and drop it from the model cache); its files stay where they are."""
        try:
            return _manager(request).remove(name)
        except UnknownModelError as e:
            raise HTTPException(404, str(e)) from None

    return router


def add_routes(app: FastAPI) -> None:
    prefix: Any = getattr(app.state, "api_prefix", "/api/v1")
    app.include_router(build_router(), prefix=prefix)

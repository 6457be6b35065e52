"""Fixtures for the invokeai-nodes tests, on top of the kernel's `invokeai_*` fixtures.

The tests exercise this plugin on its own, as if only the kernel and it were installed
(`INVOKEAI_LOAD_PLUGINS=nodes`): another plugin in the same environment cannot change the outcome.
Each test gets a fresh root folder, in-memory stores and a real Invoker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from PIL.Image import Image

    from invokeai_core import GraphError, ImageField, ImageRecord, InvokeAIConfig, Invoker, NodeError
    from invokeai_core.testing import GraphRun


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKEAI_LOAD_PLUGINS", "nodes")
    monkeypatch.delenv("INVOKEAI_STRICT_PLUGINS", raising=False)


@pytest.fixture
def nodes_settings() -> dict[str, Any] | None:
    """The `[plugins.nodes]` table written to the test's invokeai.toml (None: no table, the defaults).
    Override it with `@pytest.mark.parametrize("nodes_settings", [{...}])`."""
    return None


@pytest.fixture
def invokeai_config(invokeai_root: Path, nodes_settings: dict[str, Any] | None) -> InvokeAIConfig:
    """The kernel's fixture, plus this plugin's settings written to `<root>/invokeai.toml`, read the
    way a user's file is."""
    from invokeai_core import load_config

    if nodes_settings is not None:
        lines = ["[plugins.nodes]", *(f"{k} = {json.dumps(v)}" for k, v in nodes_settings.items())]
        (invokeai_root / "invokeai.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return load_config(root=invokeai_root, environ={})


def _single(type_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": {"n": {"id": "n", "type": type_id, **fields}}, "edges": []}


@pytest.fixture
def run_node(invokeai_run_graph: Callable[..., GraphRun]) -> Callable[..., Any]:
    """Run one node with direct values; return its output (the run must complete)."""

    def run(type_id: str, **fields: Any) -> Any:
        result = invokeai_run_graph(_single(type_id, fields))
        assert result.status == "completed", result.errors
        return result["n"]

    return run


@pytest.fixture
def node_error(invokeai_run_graph: Callable[..., GraphRun]) -> Callable[..., NodeError]:
    """Run one node that must fail while running; return the recorded error (type, message)."""

    def run(type_id: str, **fields: Any) -> NodeError:
        result = invokeai_run_graph(_single(type_id, fields))
        assert result.status == "failed", result.results
        return result.errors["n"]

    return run


@pytest.fixture
def refused(invokeai_run_graph: Callable[..., GraphRun]) -> Callable[..., GraphError]:
    """Build a one-node graph that must be refused before anything runs; return the error."""
    from invokeai_core import GraphError

    def run(type_id: str, **fields: Any) -> GraphError:
        with pytest.raises(GraphError) as info:
            invokeai_run_graph(_single(type_id, fields))
        return info.value

    return run


@pytest.fixture
def put_image(invokeai_invoker: Invoker) -> Callable[[Image], dict[str, str]]:
    """Store a PIL image in the image service (as an upload would) and return its field as JSON."""

    def put(image: Image) -> dict[str, str]:
        record = invokeai_invoker.services.image_service.create(image)
        return {"image_name": record.image_name}

    return put


@pytest.fixture
def get_image(invokeai_invoker: Invoker) -> Callable[[ImageField], Image]:
    """The stored pixels of an output image."""

    def get(field: ImageField) -> Image:
        return invokeai_invoker.services.image_service.get_pil(field.image_name)

    return get


@pytest.fixture
def get_record(invokeai_invoker: Invoker) -> Callable[[ImageField], ImageRecord]:
    """The stored record (size, mode, is_intermediate) of an output image."""

    def get(field: ImageField) -> ImageRecord:
        return invokeai_invoker.services.image_service.get_record(field.image_name)

    return get

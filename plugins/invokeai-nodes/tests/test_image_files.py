"""`image_load` and `save_image`: the only nodes that touch files outside the image service, and only
inside `plugins.nodes.allowed_paths`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from invokeai_nodes.settings import PathNotAllowedError, SettingsError, allowed_folders, load_settings
from PIL import Image

from invokeai_core import load_config

Get = Callable[[Any], Image.Image]


def _write(path: Path, image: Image.Image, **save: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **save)
    return path


def _finals(invoker: Any) -> list[str]:
    return [r.image_name for r in invoker.services.image_service.list(is_intermediate=False, limit=100).items]


# -- image_load ---------------------------------------------------------------------------------
def test_image_load_reads_from_the_default_inputs_folder(
    run_node: Callable[..., Any], invokeai_root: Path, get_image: Get, get_record: Any
) -> None:
    source = Image.new("RGB", (7, 5), (1, 2, 3))
    source.putpixel((6, 4), (200, 100, 0))
    path = _write(invokeai_root / "inputs" / "cat.png", source)
    for given in ("inputs/cat.png", str(path)):  # relative to the root, or absolute
        out = run_node("image_load", path=given)
        assert (out.width, out.height) == (7, 5)
        image = get_image(out.image)
        assert image.getpixel((6, 4)) == (200, 100, 0) and image.getpixel((0, 0)) == (1, 2, 3)
        record = get_record(out.image)
        assert record.is_intermediate is True and record.metadata == {"source_path": str(path.resolve())}


def test_image_load_outside_the_allowed_folders_is_refused_naming_the_setting(
    node_error: Callable[..., Any], invokeai_root: Path, tmp_path: Path
) -> None:
    outside = _write(tmp_path / "elsewhere" / "secret.png", Image.new("L", (1, 1)))
    err = node_error("image_load", path=str(outside))
    assert err.type == "PathNotAllowedError"
    assert err.message.startswith("image_load: input 'path'")
    assert "set plugins.nodes.allowed_paths in invokeai.toml" in err.message
    assert str(invokeai_root / "inputs") in err.message  # it says what is allowed now


def test_dot_dot_and_symlinks_cannot_leave_an_allowed_folder(
    node_error: Callable[..., Any], invokeai_root: Path, tmp_path: Path
) -> None:
    outside = _write(tmp_path / "secret.png", Image.new("L", (1, 1)))
    _write(invokeai_root / "inputs" / "ok.png", Image.new("L", (1, 1)))
    assert node_error("image_load", path="inputs/../../secret.png").type == "PathNotAllowedError"
    link = invokeai_root / "inputs" / "link.png"
    link.symlink_to(outside)
    assert node_error("image_load", path="inputs/link.png").type == "PathNotAllowedError"
    (invokeai_root / "inputs" / "dir").symlink_to(tmp_path, target_is_directory=True)
    assert node_error("image_load", path="inputs/dir/secret.png").type == "PathNotAllowedError"


@pytest.mark.parametrize("nodes_settings", [{"allowed_paths": ["pictures"]}])
def test_allowed_paths_replaces_the_defaults(
    run_node: Callable[..., Any], node_error: Callable[..., Any], invokeai_root: Path
) -> None:
    _write(invokeai_root / "pictures" / "a.png", Image.new("RGB", (3, 3)))
    _write(invokeai_root / "inputs" / "b.png", Image.new("RGB", (3, 3)))
    assert run_node("image_load", path="pictures/a.png").width == 3
    err = node_error("image_load", path="inputs/b.png")
    assert err.type == "PathNotAllowedError" and str(invokeai_root / "pictures") in err.message


def test_absolute_allowed_paths_and_one_folder_from_the_environment(tmp_path: Path) -> None:
    root = tmp_path / "root"
    config = load_config(root=root, environ={"INVOKEAI_PLUGINS__NODES__ALLOWED_PATHS": str(tmp_path / "data")})
    assert allowed_folders(config) == [(tmp_path / "data").resolve()]
    config = load_config(root=root, environ={"INVOKEAI_PLUGINS__NODES__ALLOWED_PATHS": '["/srv/a", "b"]'})
    assert allowed_folders(config) == [Path("/srv/a").resolve(), (root / "b").resolve()]
    config = load_config(root=root, environ={"INVOKEAI_PLUGINS__NODES__ALLOWED_PATHS": "[]"})
    assert allowed_folders(config) == []
    assert allowed_folders(load_config(root=root, environ={})) == [
        (root / "inputs").resolve(),
        (root / "exports").resolve(),
    ]


@pytest.mark.parametrize("nodes_settings", [{"allowed_paths": []}])
def test_an_empty_list_allows_nothing(node_error: Callable[..., Any], invokeai_root: Path) -> None:
    _write(invokeai_root / "inputs" / "b.png", Image.new("RGB", (3, 3)))
    err = node_error("image_load", path="inputs/b.png")
    assert "outside the allowed folders (none)" in err.message


@pytest.mark.parametrize("nodes_settings", [{"allowed_path": ["x"]}, {"allowed_paths": [1, 2]}])
def test_bad_settings_are_named(node_error: Callable[..., Any], nodes_settings: dict[str, Any]) -> None:
    err = node_error("image_load", path="inputs/x.png")
    assert err.type == "SettingsError" and "plugins.nodes.allowed_path" in err.message


def test_settings_errors_name_the_key(tmp_path: Path) -> None:
    config = load_config(root=tmp_path, environ={"INVOKEAI_PLUGINS__NODES__ALLOWD_PATHS": "x"})
    with pytest.raises(SettingsError, match=r"unknown setting 'plugins.nodes.allowd_paths' \(known: allowed_paths\)"):
        load_settings(config)


def test_image_load_missing_or_unreadable_files(node_error: Callable[..., Any], invokeai_root: Path) -> None:
    err = node_error("image_load", path="inputs/none.png")
    assert err.type == "FileNotFoundError" and "there is no file at" in err.message
    (invokeai_root / "inputs").mkdir()
    (invokeai_root / "inputs" / "notes.txt").write_text("not an image")
    err = node_error("image_load", path="inputs/notes.txt")
    assert "is not an image file Pillow can read" in err.message
    (invokeai_root / "inputs" / "folder.png").mkdir()
    assert node_error("image_load", path="inputs/folder.png").type == "FileNotFoundError"


def test_image_load_applies_exif_orientation_and_stores_odd_modes(
    run_node: Callable[..., Any], invokeai_root: Path, get_image: Get
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    _write(invokeai_root / "inputs" / "photo.jpg", Image.new("RGB", (40, 20), (0, 128, 255)), exif=exif)
    out = run_node("image_load", path="inputs/photo.jpg")
    assert (out.width, out.height) == (20, 40)
    _write(invokeai_root / "inputs" / "print.jpg", Image.new("CMYK", (4, 4), (0, 255, 255, 0)), quality=100)
    image = get_image(run_node("image_load", path="inputs/print.jpg").image)
    assert image.mode == "RGB"
    red, green, blue = image.getpixel((1, 1))
    assert red > 200 and green < 60 and blue < 60


def test_image_load_is_never_cached(run_node: Callable[..., Any], invokeai_root: Path, get_image: Get) -> None:
    path = invokeai_root / "inputs" / "changing.png"
    _write(path, Image.new("L", (1, 1), 10))
    assert get_image(run_node("image_load", path="inputs/changing.png").image).getpixel((0, 0)) == 10
    _write(path, Image.new("L", (1, 1), 20))
    assert get_image(run_node("image_load", path="inputs/changing.png").image).getpixel((0, 0)) == 20


# -- save_image ---------------------------------------------------------------------------------
def _blank_then_save(**save: Any) -> dict[str, Any]:
    return {
        "nodes": {
            "blank": {"id": "blank", "type": "blank_image", "width": 8, "height": 6, "color": "#ff0000"},
            "save": {"id": "save", "type": "save_image", **save},
        },
        "edges": [
            {"source": {"node_id": "blank", "field": "image"}, "destination": {"node_id": "save", "field": "image"}}
        ],
    }


def test_save_image_marks_its_image_final_and_the_rest_stay_intermediate(
    invokeai_run_graph: Callable[..., Any], invokeai_invoker: Any, get_record: Any, get_image: Get
) -> None:
    result = invokeai_run_graph(_blank_then_save())
    assert result.status == "completed", result.errors
    blank, saved = result["blank"].image, result["save"].image
    assert blank.image_name != saved.image_name
    assert get_record(blank).is_intermediate is True
    assert get_record(saved).is_intermediate is False
    assert _finals(invokeai_invoker) == [saved.image_name]
    image = get_image(saved)
    assert image.size == (8, 6) and image.getpixel((0, 0)) == (255, 0, 0)
    assert "invokeai_graph" in image.info  # a final image says how it was made
    assert (result["save"].width, result["save"].height) == (8, 6)


def test_save_image_exports_a_png_to_a_folder(
    invokeai_run_graph: Callable[..., Any], invokeai_root: Path, get_image: Get
) -> None:
    result = invokeai_run_graph(_blank_then_save(export_path="exports/run1"))
    saved = result["save"].image
    exported = invokeai_root / "exports" / "run1" / saved.image_name
    with Image.open(exported) as png:
        assert png.format == "PNG" and png.size == (8, 6) and png.convert("RGB").getpixel((3, 3)) == (255, 0, 0)
        assert "invokeai_graph" in png.text and png.text["invokeai_node_id"] == "save"
    assert not list((invokeai_root / "exports" / "run1").glob(".*.tmp"))


def test_save_image_exports_to_a_file_and_does_not_overwrite_by_default(
    invokeai_run_graph: Callable[..., Any], invokeai_invoker: Any, invokeai_root: Path
) -> None:
    target = invokeai_root / "exports" / "final.png"
    assert invokeai_run_graph(_blank_then_save(export_path="exports/final.png")).status == "completed"
    assert target.is_file() and len(_finals(invokeai_invoker)) == 1
    again = invokeai_run_graph(_blank_then_save(export_path="exports/final.png"))
    assert again.status == "failed"
    assert again.errors["save"].type == "FileExistsError" and "set 'overwrite'" in again.errors["save"].message
    assert len(_finals(invokeai_invoker)) == 1  # refused before anything was stored
    before = target.stat().st_mtime_ns
    assert invokeai_run_graph(_blank_then_save(export_path="exports/final.png", overwrite=True)).status == "completed"
    assert target.stat().st_mtime_ns >= before and len(_finals(invokeai_invoker)) == 2


def test_save_image_export_outside_the_allowed_folders_is_refused(
    invokeai_run_graph: Callable[..., Any], invokeai_invoker: Any, tmp_path: Path
) -> None:
    result = invokeai_run_graph(_blank_then_save(export_path=str(tmp_path / "out.png")))
    assert result.status == "failed"
    err = result.errors["save"]
    assert err.type == "PathNotAllowedError" and "input 'export_path'" in err.message
    assert "plugins.nodes.allowed_paths" in err.message
    assert not (tmp_path / "out.png").exists() and _finals(invokeai_invoker) == []


def test_save_image_export_to_an_existing_file_as_a_folder_is_refused(
    invokeai_run_graph: Callable[..., Any], invokeai_root: Path
) -> None:
    (invokeai_root / "exports").mkdir()
    (invokeai_root / "exports" / "notes").write_text("x")
    result = invokeai_run_graph(_blank_then_save(export_path="exports/notes"))
    assert result.errors["save"].type == "NotADirectoryError"


def test_save_image_runs_every_time(invokeai_run_graph: Callable[..., Any], invokeai_invoker: Any) -> None:
    invokeai_run_graph(_blank_then_save())
    invokeai_run_graph(_blank_then_save())
    assert len(_finals(invokeai_invoker)) == 2  # never served from the output cache


def test_path_not_allowed_is_a_permission_error() -> None:
    assert issubclass(PathNotAllowedError, PermissionError)

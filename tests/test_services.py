"""Services: contract tests for the stores, the image service, the queue, and service selection.

The contract classes (`ImageFileStoreContract`, `ImageRecordStoreContract`) hold no fixture of
their own: a store of another kind (S3, SQLite) subclasses one and provides `store`.
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from invokeai_core import (
    BaseInvocation,
    BaseInvocationOutput,
    ImageField,
    InputField,
    InvocationContext,
    OutputField,
    hookimpl,
    invocation,
    invocation_output,
)
from invokeai_core.batch import Batch, BatchDatum
from invokeai_core.config import load_config
from invokeai_core.errors import BatchError, ServiceUnavailableError, SessionNotFoundError
from invokeai_core.graph import Graph
from invokeai_core.registry import NodeRegistry
from invokeai_core.services.base import (
    ImageFileStorageBase,
    ImageRecord,
    ImageRecordStorageBase,
    ObjectStorageBase,
    SessionQueueBase,
)
from invokeai_core.services.container import Services
from invokeai_core.services.image_service import ImageService
from invokeai_core.services.images_local import LocalImageFileStorage
from invokeai_core.services.memory import (
    MemoryImageRecordStorage,
    MemoryOutputCache,
    MemorySessionQueue,
    MemorySessionStorage,
)
from invokeai_core.services.objects_memory import MemoryObjectStorage
from invokeai_core.session import Session


# -- nodes used below -----------------------------------------------------------------------------
@invocation_output("s_svc_int_output")
class SvcIntOutput(BaseInvocationOutput):
    value: int = OutputField(description="A number")


@invocation("s_svc_add")
class SvcAdd(BaseInvocation):
    """Adds two numbers."""

    a: int = InputField(default=0)
    b: int = InputField(default=0)

    def invoke(self, context: InvocationContext) -> SvcIntOutput:
        return SvcIntOutput(value=self.a + self.b)


@invocation("s_svc_mul")
class SvcMul(BaseInvocation):
    """Multiplies two numbers."""

    a: int = InputField(default=1)
    b: int = InputField(default=1)

    def invoke(self, context: InvocationContext) -> SvcIntOutput:
        return SvcIntOutput(value=self.a * self.b)


@invocation_output("s_svc_image_output")
class SvcImageOutput(BaseInvocationOutput):
    image: ImageField = OutputField(description="The image")
    width: int = OutputField()
    height: int = OutputField()


@invocation("s_make_image")
class SvcMakeImage(BaseInvocation):
    """Draws a solid image and saves it through the context."""

    color: str = InputField(default="red")
    width: int = InputField(default=40)
    height: int = InputField(default=30)
    final: bool = InputField(default=True)

    def invoke(self, context: InvocationContext) -> SvcImageOutput:
        image = Image.new("RGB", (self.width, self.height), self.color)
        record = context.images.save(image, is_intermediate=not self.final, metadata={"color": self.color})
        return SvcImageOutput(image=record.field, width=record.width, height=record.height)


@invocation("s_invert_image")
class SvcInvertImage(BaseInvocation):
    """Loads an image through the context, inverts it and saves the result."""

    image: ImageField = InputField(description="The image to invert")

    def invoke(self, context: InvocationContext) -> SvcImageOutput:
        from PIL import ImageOps

        loaded = context.images.load(self.image)
        inverted = ImageOps.invert(loaded.convert("RGB"))
        record = context.images.save(inverted)
        return SvcImageOutput(image=record.field, width=record.width, height=record.height)


def _registry(*classes: type[BaseInvocation]) -> NodeRegistry:
    registry = NodeRegistry()
    for cls in classes or (SvcAdd, SvcMul):
        registry.add(cls, "s_tests")
    return registry


def _pixels(image: Image.Image) -> bytes:
    return image.convert("RGBA").tobytes()


def _checker(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, (10, 20, 30))
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            image.putpixel((x, y), (250, (x * 3) % 256, (y * 5) % 256))
    return image.convert(mode)


# == image file store contract ======================================================================
class ImageFileStoreContract:
    """Subclass with a `store` fixture to run the contract against another image file store."""

    @pytest.fixture
    def store(self) -> ImageFileStorageBase:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def stored_files(self, store: ImageFileStorageBase) -> set[str] | None:
        """Every file (object key) the store holds, or None if the store cannot list them."""
        return None

    def test_save_and_get_round_trip(self, store: ImageFileStorageBase):
        image = _checker()
        store.save("one.png", image)
        loaded = store.get("one.png")
        assert loaded.size == image.size
        assert loaded.mode == "RGB"
        assert _pixels(loaded) == _pixels(image)

    @pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1"])
    def test_modes_round_trip(self, store: ImageFileStorageBase, mode: str):
        image = _checker(mode=mode)
        store.save(f"mode_{mode}.png", image)
        loaded = store.get(f"mode_{mode}.png")
        assert loaded.mode == mode
        assert _pixels(loaded) == _pixels(image)

    def test_exists_and_delete(self, store: ImageFileStorageBase):
        assert not store.exists("gone.png")
        store.save("gone.png", _checker())
        assert store.exists("gone.png")
        store.delete("gone.png")
        assert not store.exists("gone.png")
        with pytest.raises(KeyError):
            store.get("gone.png")
        with pytest.raises(KeyError):
            store.get_bytes("gone.png")
        with pytest.raises(KeyError):
            store.get_bytes("gone.png", thumbnail=True)
        store.delete("gone.png")  # deleting again is not an error

    def test_missing_image_raises_key_error(self, store: ImageFileStorageBase):
        with pytest.raises(KeyError):
            store.get("never.png")
        with pytest.raises(KeyError):
            store.get_bytes("never.png")

    def test_get_bytes_is_a_png_with_metadata_text_chunks(self, store: ImageFileStorageBase):
        metadata = {"invokeai_graph": json.dumps({"nodes": {}, "edges": []}), "note": "héllo wörld"}
        store.save("meta.png", _checker(), metadata=metadata)
        data = store.get_bytes("meta.png")
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as png:
            assert png.format == "PNG"
            assert dict(png.text) == metadata  # type: ignore[attr-defined]
        loaded = store.get("meta.png")
        assert loaded.info["note"] == "héllo wörld"

    def test_thumbnail(self, store: ImageFileStorageBase):
        store.save("big.png", _checker((600, 300)), thumbnail_size=128)
        data = store.get_bytes("big.png", thumbnail=True)
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        with Image.open(io.BytesIO(data)) as thumb:
            assert thumb.size == (128, 64)
        store.save("small.png", _checker((40, 20)))
        with Image.open(io.BytesIO(store.get_bytes("small.png", thumbnail=True))) as thumb:
            assert thumb.size == (40, 20)  # never enlarged

    def test_overwrite_replaces_the_image(self, store: ImageFileStorageBase):
        store.save("same.png", Image.new("RGB", (8, 8), "red"))
        store.save("same.png", Image.new("RGB", (9, 7), "blue"))
        loaded = store.get("same.png")
        assert loaded.size == (9, 7)
        assert loaded.getpixel((0, 0)) == (0, 0, 255)

    def test_get_path_is_none_or_the_file(self, store: ImageFileStorageBase):
        store.save("path.png", _checker())
        path = store.get_path("path.png")
        if path is not None:
            assert Path(path).is_file()
            assert Path(path).read_bytes() == store.get_bytes("path.png")
            thumb = store.get_path("path.png", thumbnail=True)
            assert thumb is not None and Path(thumb).read_bytes() == store.get_bytes("path.png", thumbnail=True)

    @pytest.mark.parametrize("name", ["../escape.png", "a/b.png", ".hidden.png", ""])
    def test_unsafe_names_are_refused(self, store: ImageFileStorageBase, name: str):
        with pytest.raises(KeyError):
            store.save(name, _checker())
        assert not store.exists(name)

    def test_no_temporary_files_are_left(self, store: ImageFileStorageBase):
        for i in range(3):
            store.save(f"t{i}.png", _checker(), metadata={"i": str(i)})
        store.delete("t1.png")
        files = self.stored_files(store)
        if files is None:
            pytest.skip("this store cannot list its files")
        assert not [f for f in files if f.endswith(".tmp") or Path(f).name.startswith(".")]
        assert len(files) == 4  # two images, two thumbnails

    def test_failed_save_leaves_nothing(self, store: ImageFileStorageBase):
        with pytest.raises(OSError):
            store.save("float.png", Image.new("F", (8, 8)))  # PNG cannot hold 32-bit float pixels
        assert not store.exists("float.png")
        files = self.stored_files(store)
        if files is not None:
            assert files == set()


class TestLocalImageFileStorage(ImageFileStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> ImageFileStorageBase:
        return LocalImageFileStorage(folder=tmp_path / "outputs")

    def stored_files(self, store: ImageFileStorageBase) -> set[str] | None:
        assert isinstance(store, LocalImageFileStorage)
        base = store.images_dir.parent
        return {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}

    def test_layout_under_the_root(self, tmp_path: Path):
        config = load_config(root=tmp_path, environ={})
        store = LocalImageFileStorage(config)
        store.save("x.png", _checker())
        assert (tmp_path / "outputs" / "images" / "x.png").is_file()
        assert (tmp_path / "outputs" / "thumbnails" / "x.webp").is_file()
        assert store.get_path("x.png") == str(tmp_path / "outputs" / "images" / "x.png")

    def test_cmyk_is_stored_as_rgb(self, store: ImageFileStorageBase):
        store.save("cmyk.png", Image.new("CMYK", (4, 4), (0, 255, 255, 0)))
        loaded = store.get("cmyk.png")
        assert loaded.mode == "RGB"
        assert loaded.getpixel((0, 0)) == (255, 0, 0)


# == image records contract ======================================================================
class ImageRecordStoreContract:
    @pytest.fixture
    def store(self) -> ImageRecordStorageBase:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    @staticmethod
    def record(name: str, **kw: Any) -> ImageRecord:
        return ImageRecord(image_name=name, width=kw.pop("width", 8), height=kw.pop("height", 8), **kw)

    def test_save_and_get(self, store: ImageRecordStorageBase):
        rec = self.record("a.png", width=64, height=32, session_id="s1", node_id="n1", metadata={"seed": 1})
        store.save(rec)
        got = store.get("a.png")
        assert got.model_dump() == rec.model_dump()
        with pytest.raises(KeyError):
            store.get("nope.png")

    def test_update_star_and_intermediate(self, store: ImageRecordStorageBase):
        store.save(self.record("a.png"))
        assert store.get("a.png").starred is False
        updated = store.update("a.png", starred=True)
        assert updated.starred is True
        assert store.get("a.png").starred is True
        assert store.get("a.png").is_intermediate is True
        store.update("a.png", is_intermediate=False)
        got = store.get("a.png")
        assert (got.starred, got.is_intermediate) == (True, False)
        store.update("a.png", starred=False)
        assert store.get("a.png").starred is False
        with pytest.raises(KeyError):
            store.update("nope.png", starred=True)

    def test_list_newest_first_with_pagination(self, store: ImageRecordStorageBase):
        for i in range(7):
            store.save(self.record(f"{i}.png", created_at=f"2024-01-01T00:00:0{i}.000+00:00"))
        page = store.list(limit=3)
        assert [r.image_name for r in page.items] == ["6.png", "5.png", "4.png"]
        assert (page.offset, page.limit, page.total) == (0, 3, 7)
        page = store.list(offset=3, limit=3)
        assert [r.image_name for r in page.items] == ["3.png", "2.png", "1.png"]
        page = store.list(offset=6, limit=3)
        assert [r.image_name for r in page.items] == ["0.png"]
        assert store.list(offset=10).items == []
        assert store.list(offset=10).total == 7

    def test_newest_first_is_by_creation_time_not_insertion(self, store: ImageRecordStorageBase):
        store.save(self.record("new.png", created_at="2024-05-01T00:00:00.000+00:00"))
        store.save(self.record("old.png", created_at="2020-01-01T00:00:00.000+00:00"))
        assert [r.image_name for r in store.list().items] == ["new.png", "old.png"]

    def test_same_timestamp_keeps_insertion_order_newest_first(self, store: ImageRecordStorageBase):
        for name in ("first.png", "second.png", "third.png"):
            store.save(self.record(name, created_at="2024-01-01T00:00:00.000+00:00"))
        assert [r.image_name for r in store.list().items] == ["third.png", "second.png", "first.png"]

    def test_list_filters(self, store: ImageRecordStorageBase):
        store.save(self.record("a.png", session_id="s1", is_intermediate=False, created_at="2024-01-01T00:00:01Z"))
        store.save(self.record("b.png", session_id="s1", is_intermediate=True, created_at="2024-01-01T00:00:02Z"))
        store.save(self.record("c.png", session_id="s2", is_intermediate=False, created_at="2024-01-01T00:00:03Z"))
        store.update("b.png", starred=True)

        def names(**filters: Any) -> list[str]:
            return [r.image_name for r in store.list(**filters).items]

        assert names(session_id="s1") == ["b.png", "a.png"]
        assert names(session_id="s2") == ["c.png"]
        assert names(session_id="s3") == []
        assert names(is_intermediate=False) == ["c.png", "a.png"]
        assert names(is_intermediate=True) == ["b.png"]
        assert names(starred=True) == ["b.png"]
        assert names(starred=False) == ["c.png", "a.png"]
        assert names(session_id="s1", is_intermediate=False) == ["a.png"]
        assert store.list(session_id="s1").total == 2

    def test_delete(self, store: ImageRecordStorageBase):
        store.save(self.record("a.png"))
        store.save(self.record("b.png"))
        store.delete("a.png")
        with pytest.raises(KeyError):
            store.get("a.png")
        assert [r.image_name for r in store.list().items] == ["b.png"]
        store.delete("a.png")  # already gone: no error


class TestMemoryImageRecordStorage(ImageRecordStoreContract):
    @pytest.fixture
    def store(self) -> ImageRecordStorageBase:
        return MemoryImageRecordStorage()


# == image service ==================================================================================
class _FailingRecords(MemoryImageRecordStorage):
    def save(self, record: ImageRecord) -> None:
        raise RuntimeError("the records database is down")


def test_image_service_create_and_read(tmp_path: Path):
    files = LocalImageFileStorage(folder=tmp_path)
    service = ImageService(files, MemoryImageRecordStorage())
    record = service.create(
        _checker(),
        session_id="s1",
        node_id="n1",
        is_intermediate=False,
        metadata={"seed": 7},
        graph={"nodes": {}, "edges": []},
    )
    assert record.image_name.endswith(".png")
    assert (record.width, record.height, record.mode) == (64, 48, "RGB")
    assert service.get_record(record.image_name) == record
    assert _pixels(service.get_pil(record.image_name)) == _pixels(_checker())
    with Image.open(io.BytesIO(files.get_bytes(record.image_name))) as png:
        text = dict(png.text)  # type: ignore[attr-defined]
    assert json.loads(text["invokeai_metadata"]) == {"seed": 7}
    assert json.loads(text["invokeai_graph"]) == {"nodes": {}, "edges": []}
    assert (text["invokeai_session_id"], text["invokeai_node_id"]) == ("s1", "n1")
    assert [r.image_name for r in service.list(session_id="s1").items] == [record.image_name]
    service.delete(record.image_name)
    assert not files.exists(record.image_name)
    with pytest.raises(KeyError):
        service.get_pil(record.image_name)


def test_image_service_is_atomic_when_the_record_store_fails(tmp_path: Path):
    files = LocalImageFileStorage(folder=tmp_path)
    records = _FailingRecords()
    service = ImageService(files, records)
    with pytest.raises(RuntimeError, match="database is down"):
        service.create(_checker(), image_name="atomic.png")
    assert not files.exists("atomic.png")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert service.list().items == []
    assert service.list().total == 0
    with pytest.raises(KeyError):
        service.get_pil("atomic.png")


def test_image_service_never_serves_a_file_without_a_record(tmp_path: Path):
    files = LocalImageFileStorage(folder=tmp_path)
    files.save("orphan.png", _checker())
    service = ImageService(files, MemoryImageRecordStorage())
    with pytest.raises(KeyError):
        service.get_pil("orphan.png")


# == context.images through a real run ================================================================
def test_context_images_save_and_load_in_a_run(invokeai_register_nodes, invokeai_run_graph, invokeai_invoker):
    invokeai_register_nodes(SvcMakeImage, SvcInvertImage)
    run = invokeai_run_graph(
        {
            "nodes": {
                "make": {"id": "make", "type": "s_make_image", "color": "#ff0000", "width": 40, "height": 30},
                "invert": {"id": "invert", "type": "s_invert_image"},
            },
            "edges": [
                {
                    "source": {"node_id": "make", "field": "image"},
                    "destination": {"node_id": "invert", "field": "image"},
                }
            ],
        }
    )
    assert run.status == "completed", run.errors
    services = invokeai_invoker.services
    made, inverted = run["make"].image.image_name, run["invert"].image.image_name
    assert made != inverted
    assert (run["invert"].width, run["invert"].height) == (40, 30)

    pil = services.image_service.get_pil(inverted)
    assert pil.getpixel((0, 0)) == (0, 255, 255)  # red inverted
    assert services.image_service.get_pil(made).getpixel((5, 5)) == (255, 0, 0)

    made_record = services.image_records.get(made)
    assert made_record.session_id == run.session.id
    assert made_record.node_id == "make"
    assert made_record.is_intermediate is False
    assert made_record.metadata == {"color": "#ff0000"}
    assert services.image_records.get(inverted).is_intermediate is True
    listed = services.image_service.list(session_id=run.session.id)
    assert {r.image_name for r in listed.items} == {made, inverted}

    # A final image embeds the graph it came from; an intermediate one does not.
    with Image.open(io.BytesIO(services.images.get_bytes(made))) as png:
        text = dict(png.text)  # type: ignore[attr-defined]
    graph = json.loads(text["invokeai_graph"])
    assert graph["nodes"]["make"]["type"] == "s_make_image"
    assert text["invokeai_session_id"] == run.session.id
    assert text["invokeai_node_id"] == "make"
    with Image.open(io.BytesIO(services.images.get_bytes(inverted))) as png:
        assert "invokeai_graph" not in png.text  # type: ignore[attr-defined]
    path = services.images.get_path(made)
    assert path is not None and Path(path).is_file()
    assert Path(path).is_relative_to(services.config.root)


# == objects ===========================================================================================
@pytest.fixture
def objects(tmp_path: Path) -> MemoryObjectStorage:
    return MemoryObjectStorage(max_items=2, folder=tmp_path / "objects")


def test_objects_save_load_delete(objects: MemoryObjectStorage):
    name = objects.save({"latents": [1.0, 2.0]})
    assert isinstance(name, str) and name
    assert objects.load(name) == {"latents": [1.0, 2.0]}
    assert objects.save([1], "named") == "named"
    assert objects.exists("named")
    objects.delete("named")
    assert not objects.exists("named")
    with pytest.raises(KeyError):
        objects.load("named")
    with pytest.raises(KeyError):
        objects.load("never-saved")
    assert not objects.exists("../escape")


def test_objects_spill_least_recently_used_to_disk(objects: MemoryObjectStorage, tmp_path: Path):
    folder = tmp_path / "objects"
    values = {f"o{i}": {"i": i, "data": list(range(i * 10))} for i in range(4)}
    for name, value in values.items():
        objects.save(value, name)
    # o0 and o1 were least recently used: on disk, not in memory
    assert [objects.in_memory(n) for n in values] == [False, False, True, True]
    assert (folder / "o0.pickle").is_file() and (folder / "o1.pickle").is_file()
    assert all(objects.exists(n) for n in values)

    assert objects.load("o2") == values["o2"]  # touch o2: o3 is now the least recently used in memory
    assert objects.load("o0") == values["o0"]  # back from disk, spilling o3
    assert objects.in_memory("o0") and objects.in_memory("o2")
    assert not objects.in_memory("o3")
    assert not (folder / "o0.pickle").exists()
    for name, value in values.items():
        assert objects.load(name) == value  # every value equal, wherever it lived
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_objects_delete_a_spilled_object(objects: MemoryObjectStorage, tmp_path: Path):
    for i in range(3):
        objects.save(i, f"o{i}")
    assert not objects.in_memory("o0")
    objects.delete("o0")
    assert not objects.exists("o0")
    assert not (tmp_path / "objects" / "o0.pickle").exists()
    with pytest.raises(KeyError):
        objects.load("o0")


def test_objects_resaving_a_spilled_name_replaces_it(objects: MemoryObjectStorage):
    objects.save("old", "x")
    objects.save(1, "a")
    objects.save(2, "b")
    assert not objects.in_memory("x")
    objects.save("new", "x")
    assert objects.load("x") == "new"
    objects.save(3, "c")
    objects.save(4, "d")  # x spilled again
    assert objects.load("x") == "new"


def test_objects_that_cannot_be_pickled_stay_in_memory(objects: MemoryObjectStorage):
    objects.save(lambda: 1, "fn")  # lambdas do not pickle
    objects.save(1, "a")
    objects.save(2, "b")  # would spill fn: it stays instead of being lost
    assert objects.load("fn")() == 1
    assert objects.load("a") == 1 and objects.load("b") == 2


def test_objects_from_config(tmp_path: Path):
    config = load_config(root=tmp_path, overrides={"objects_memory_items": 1}, environ={})
    store = MemoryObjectStorage(config)
    store.save("a", "a")
    store.save("b", "b")
    assert (tmp_path / "objects" / "a.pickle").is_file()
    assert store.load("a") == "a"


# == sessions ==============================================================================================
def _session(registry: NodeRegistry, *types: str, created_at: str | None = None) -> Session:
    graph = Graph(registry)
    for i, type_id in enumerate(types):
        graph.add_node({"id": f"n{i}", "type": type_id})
    session = Session(graph)
    if created_at is not None:
        session.created_at = created_at
    return session


def test_memory_sessions_save_get_delete():
    registry = _registry()
    store = MemorySessionStorage()
    session = _session(registry, "s_svc_add")
    store.save(session)
    assert store.get(session.id) is session
    store.delete(session.id)
    with pytest.raises(SessionNotFoundError):
        store.get(session.id)


def test_memory_sessions_list_query_and_pagination():
    registry = _registry()
    store = MemorySessionStorage()
    sessions = [
        _session(registry, "s_svc_add", created_at="2024-01-01T00:00:01.000+00:00"),
        _session(registry, "s_svc_mul", "s_svc_mul", created_at="2024-01-01T00:00:02.000+00:00"),
        _session(registry, "s_svc_add", "s_svc_mul", created_at="2024-01-01T00:00:03.000+00:00"),
        _session(registry, created_at="2024-01-01T00:00:04.000+00:00"),
    ]
    for s in sessions:
        store.save(s)
    page = store.list()
    assert [i.id for i in page.items] == [s.id for s in reversed(sessions)]
    assert page.total == 4
    assert [i.nodes for i in page.items] == [0, 2, 2, 1]
    assert page.items[1].status == "pending"

    page = store.list(offset=1, limit=2)
    assert [i.id for i in page.items] == [sessions[2].id, sessions[1].id]
    assert (page.offset, page.limit, page.total) == (1, 2, 4)

    assert [i.id for i in store.list(query="s_svc_mul").items] == [sessions[2].id, sessions[1].id]
    assert [i.id for i in store.list(query="s_svc_add").items] == [sessions[2].id, sessions[0].id]
    assert [i.id for i in store.list(query=sessions[3].id[:12]).items] == [sessions[3].id]
    assert store.list(query="no-such-thing").total == 0

    # saving again (after a node ran) does not reorder
    store.save(sessions[0])
    assert store.list().items[-1].id == sessions[0].id


# == output cache ============================================================================================
def test_output_cache_is_an_lru():
    cache = MemoryOutputCache(size=2)
    assert cache.enabled
    a, b, c = SvcIntOutput(value=1), SvcIntOutput(value=2), SvcIntOutput(value=3)
    cache.save("a", a)
    cache.save("b", b)
    assert cache.get("a") == a  # a is now the most recently used
    cache.save("c", c)  # evicts b
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == a and cache.get("c") == c
    assert (cache.hits, cache.misses) == (3, 1)
    cache.clear()
    assert len(cache) == 0 and cache.get("a") is None


def test_output_cache_size_zero_disables_it(tmp_path: Path):
    config = load_config(root=tmp_path, overrides={"cache_size": 0}, environ={})
    cache = MemoryOutputCache(config)
    assert not cache.enabled
    cache.save("a", SvcIntOutput(value=1))
    assert cache.get("a") is None
    assert len(cache) == 0
    assert MemoryOutputCache(load_config(root=tmp_path, overrides={"cache_size": 3}, environ={})).size == 3


def test_cache_size_zero_reruns_nodes(invokeai_host, invokeai_register_nodes, tmp_path: Path):
    from invokeai_core.invoker import Invoker

    calls: list[int] = []

    @invocation("s_svc_counted")
    class Counted(BaseInvocation):
        a: int = InputField(default=0)

        def invoke(self, context: InvocationContext) -> SvcIntOutput:
            calls.append(self.a)
            return SvcIntOutput(value=self.a)

    invokeai_register_nodes(Counted)
    graph = {"nodes": {"n": {"id": "n", "type": "s_svc_counted", "a": 3}}, "edges": []}
    for size, expected_calls in ((0, [3, 3]), (10, [3])):
        calls.clear()
        config = load_config(root=tmp_path, overrides={"cache_size": size}, environ={})
        services = Services(config, invokeai_host.service_registry)
        with Invoker(services, invokeai_host) as invoker:
            for _ in range(2):
                assert invoker.run_graph(graph, timeout=30).status == "completed"
        assert calls == expected_calls


# == queue ===================================================================================================
QUEUE = "default"


def _batch(values: list[int] | None = None, *, priority: int = 0, runs: int = 1, batch_id: str | None = None) -> Batch:
    data = [[BatchDatum(node_path="n", field_name="a", items=list(values))]] if values else []
    kwargs: dict[str, Any] = {"batch_id": batch_id} if batch_id else {}
    return Batch(
        graph={"nodes": {"n": {"id": "n", "type": "s_svc_add", "a": 0, "b": 100}}, "edges": []},
        data=data,
        runs=runs,
        priority=priority,
        **kwargs,
    )


@pytest.fixture
def queue() -> MemorySessionQueue:
    return MemorySessionQueue(max_size=20, registry=_registry())


def _a_values(q: SessionQueueBase, ids: list[int]) -> list[int]:
    return [q.get_item(i).graph["nodes"]["n"]["a"] for i in ids]


def test_enqueue_batch(queue: MemorySessionQueue):
    result = queue.enqueue_batch(QUEUE, _batch([1, 2, 3], batch_id="b1"))
    assert (result.queue_id, result.batch_id, result.enqueued, result.requested) == (QUEUE, "b1", 3, 3)
    assert len(result.item_ids) == 3
    items = [queue.get_item(i) for i in result.item_ids]
    assert [i.status for i in items] == ["pending"] * 3
    assert _a_values(queue, result.item_ids) == [1, 2, 3]
    assert [i.field_values for i in items] == [[{"node_path": "n", "field_name": "a", "value": v}] for v in (1, 2, 3)]
    assert len({i.session_id for i in items}) == 3
    assert all(i.graph["nodes"]["n"]["b"] == 100 for i in items)
    assert queue.status(QUEUE).pending == 3


def test_enqueue_batch_with_runs_and_no_data(queue: MemorySessionQueue):
    result = queue.enqueue_batch(QUEUE, _batch(runs=3))
    assert result.enqueued == 3


def test_enqueue_an_invalid_batch_adds_nothing(queue: MemorySessionQueue):
    bad = Batch(
        graph={"nodes": {"n": {"id": "n", "type": "s_svc_add"}}, "edges": []},
        data=[[BatchDatum(node_path="n", field_name="zzz", items=[1])]],
    )
    with pytest.raises(BatchError):
        queue.enqueue_batch(QUEUE, bad)
    assert queue.status(QUEUE).total == 0


def test_queue_order_is_priority_desc_then_item_id(queue: MemorySessionQueue):
    low = queue.enqueue_batch(QUEUE, _batch([1, 2, 3], priority=0)).item_ids
    high = queue.enqueue_batch(QUEUE, _batch([4, 5], priority=5)).item_ids
    mid = queue.enqueue_batch(QUEUE, _batch([6], priority=2)).item_ids
    expected = high + mid + low
    assert [i.item_id for i in queue.list_items(QUEUE)] == expected
    dequeued = []
    while (item := queue.dequeue()) is not None:
        assert item.status == "in_progress" and item.started_at is not None
        dequeued.append(item.item_id)
    assert dequeued == expected


def test_prepend_goes_before_everything_pending(queue: MemorySessionQueue):
    queue.enqueue_batch(QUEUE, _batch([1], priority=3))
    queue.enqueue_batch(QUEUE, _batch([2], priority=0))
    front = queue.enqueue_batch(QUEUE, _batch([3, 4], priority=0), prepend=True)
    assert front.priority > 3
    first, second = queue.dequeue(), queue.dequeue()
    assert first is not None and second is not None
    assert [first.item_id, second.item_id] == front.item_ids


def test_max_size(queue: MemorySessionQueue):
    small = MemorySessionQueue(max_size=3, registry=_registry())
    small.enqueue_batch(QUEUE, _batch([1, 2]))
    with pytest.raises(BatchError, match="maximum of 3"):
        small.enqueue_batch(QUEUE, _batch([3, 4]))
    assert small.status(QUEUE).pending == 2
    small.enqueue_batch(QUEUE, _batch([5]))
    assert small.status(QUEUE).pending == 3
    small.dequeue()  # in progress items do not count against the limit
    small.enqueue_batch(QUEUE, _batch([6]))
    assert small.status(QUEUE).total == 4


def test_max_size_from_config(tmp_path: Path):
    config = load_config(root=tmp_path, overrides={"max_queue_size": 2}, environ={})
    q = MemorySessionQueue(config, registry=_registry())
    with pytest.raises(BatchError):
        q.enqueue_batch(QUEUE, _batch([1, 2, 3]))


def test_cancel_items(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3])).item_ids
    assert queue.cancel_items([ids[0]]) == [ids[0]]
    assert queue.get_item(ids[0]).status == "canceled"
    assert queue.get_item(ids[0]).completed_at is not None
    assert queue.cancel_items([ids[0]]) == []  # already finished
    queue.set_status(ids[1], "completed")
    assert queue.cancel_items([ids[1], ids[2], 9999]) == [ids[2]]
    assert queue.get_item(ids[1]).status == "completed"


def test_cancel_batch(queue: MemorySessionQueue):
    a = queue.enqueue_batch(QUEUE, _batch([1, 2], batch_id="a")).item_ids
    b = queue.enqueue_batch(QUEUE, _batch([3, 4], batch_id="b")).item_ids
    other = queue.enqueue_batch("other", _batch([5], batch_id="a")).item_ids
    assert sorted(queue.cancel_batch(QUEUE, ["a"])) == a
    assert [queue.get_item(i).status for i in a] == ["canceled", "canceled"]
    assert [queue.get_item(i).status for i in b] == ["pending", "pending"]
    assert queue.get_item(other[0]).status == "pending"  # another queue's batch of the same id


def test_cancel_all_except_current_never_touches_the_in_progress_item(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3, 4])).item_ids
    current = queue.dequeue()
    assert current is not None and current.item_id == ids[0]
    queue.set_status(ids[1], "failed", error_type="ValueError", error_message="boom", error_traceback="tb")
    canceled = queue.cancel_all_except_current(QUEUE)
    assert sorted(canceled) == ids[2:]
    assert queue.get_item(ids[0]).status == "in_progress"
    assert queue.get_item(ids[1]).status == "failed"
    assert queue.status(QUEUE).model_dump() == {
        "queue_id": QUEUE,
        "pending": 0,
        "in_progress": 1,
        "completed": 0,
        "failed": 1,
        "canceled": 2,
        "total": 4,
    }


def test_retry_failed_and_canceled(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3], batch_id="r")).item_ids
    queue.set_status(ids[0], "failed", error_type="ValueError", error_message="boom", error_traceback="tb")
    queue.cancel_items([ids[1]])
    queue.set_status(ids[2], "completed")
    new_ids = queue.retry_items(ids)
    assert len(new_ids) == 2
    assert not set(new_ids) & set(ids)
    for old_id, new_id in zip(ids[:2], new_ids, strict=True):
        old, new = queue.get_item(old_id), queue.get_item(new_id)
        assert new.status == "pending"
        assert (new.error_type, new.error_message, new.error_traceback) == (None, None, None)
        assert (new.started_at, new.completed_at) == (None, None)
        assert new.batch_id == "r"
        assert new.graph == old.graph
        assert new.session_id != old.session_id
    assert queue.get_item(ids[0]).status == "failed"  # the original stays as history
    assert queue.retry_items([ids[2], 9999]) == []  # completed or unknown: nothing to retry
    assert queue.status(QUEUE).pending == 2


def test_clear_keeps_the_in_progress_item(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3])).item_ids
    queue.enqueue_batch("other", _batch([4]))
    queue.dequeue()
    queue.set_status(ids[1], "completed")
    assert queue.clear(QUEUE) == 2
    assert [i.item_id for i in queue.list_items(QUEUE)] == [ids[0]]
    assert queue.status("other").pending == 1


def test_prune_removes_only_finished_items(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3, 4, 5])).item_ids
    first = queue.dequeue()
    assert first is not None
    queue.set_status(ids[1], "completed")
    queue.set_status(ids[2], "failed", error_type="E", error_message="m", error_traceback="t")
    queue.cancel_items([ids[3]])
    assert queue.prune(QUEUE) == 3
    assert [i.item_id for i in queue.list_items(QUEUE)] == [ids[0], ids[4]]
    with pytest.raises(KeyError):
        queue.get_item(ids[1])


def test_list_items_with_a_cursor(queue: MemorySessionQueue):
    low = queue.enqueue_batch(QUEUE, _batch([1, 2, 3], priority=0)).item_ids
    high = queue.enqueue_batch(QUEUE, _batch([4, 5], priority=1)).item_ids
    order = high + low
    pages, cursor = [], None
    while True:
        page = queue.list_items(QUEUE, cursor=cursor, limit=2)
        if not page:
            break
        pages.append([i.item_id for i in page])
        cursor = page[-1].item_id
    assert pages == [order[0:2], order[2:4], order[4:5]]

    # a status filter: the cursor is the last item of the previous filtered page
    queue.set_status(low[0], "completed")
    pending = queue.list_items(QUEUE, status="pending", limit=2)
    assert [i.item_id for i in pending] == [high[0], high[1]]
    rest = queue.list_items(QUEUE, status="pending", cursor=pending[-1].item_id, limit=10)
    assert [i.item_id for i in rest] == [low[1], low[2]]
    # a cursor item that no longer matches the filter still marks the position
    assert [i.item_id for i in queue.list_items(QUEUE, status="pending", cursor=low[0])] == [low[1], low[2]]
    queue.prune(QUEUE)
    assert [i.item_id for i in queue.list_items(QUEUE, status="completed")] == []


def test_list_items_after_a_pruned_cursor(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3, 4])).item_ids
    queue.set_status(ids[1], "completed")
    assert queue.prune(QUEUE) == 1
    assert [i.item_id for i in queue.list_items(QUEUE, cursor=ids[1])] == [ids[2], ids[3]]


def test_status_counts_per_queue(queue: MemorySessionQueue):
    ids = queue.enqueue_batch(QUEUE, _batch([1, 2, 3, 4, 5, 6])).item_ids
    queue.enqueue_batch("other", _batch([7, 8]))
    queue.dequeue()
    queue.set_status(ids[1], "completed")
    queue.set_status(ids[2], "failed", error_type="E", error_message="m", error_traceback="t")
    queue.cancel_items([ids[3]])
    counts = queue.status(QUEUE)
    assert (
        counts.pending,
        counts.in_progress,
        counts.completed,
        counts.failed,
        counts.canceled,
        counts.total,
    ) == (
        2,
        1,
        1,
        1,
        1,
        6,
    )
    other = queue.status("other")
    assert (other.pending, other.total) == (2, 2)
    assert queue.status("empty").total == 0


def test_set_status_records_errors(queue: MemorySessionQueue):
    (item_id,) = queue.enqueue_batch(QUEUE, _batch([1])).item_ids
    item = queue.set_status(item_id, "failed", error_type="ValueError", error_message="bad", error_traceback="tb")
    assert (item.status, item.error_type, item.error_message, item.error_traceback) == (
        "failed",
        "ValueError",
        "bad",
        "tb",
    )
    assert queue.get_item(item_id) == item
    with pytest.raises(KeyError):
        queue.get_item(12345)


def test_queue_uses_the_invokers_registry(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(SvcAdd)
    q = invokeai_invoker.services.queue
    result = q.enqueue_batch(QUEUE, _batch([1, 2]))
    assert result.enqueued == 2


# == service selection =====================================================================================
def test_unknown_implementation_name(invokeai_host, tmp_path: Path):
    config = load_config(root=tmp_path, overrides={"services.images": "nope"}, environ={})
    services = Services(config, invokeai_host.service_registry)
    with pytest.raises(ServiceUnavailableError) as info:
        services.build_all()
    message = str(info.value)
    assert "'nope'" in message
    assert "images" in message
    assert "available: local" in message


def test_known_external_implementation_names_its_distribution(invokeai_host, tmp_path: Path):
    config = load_config(root=tmp_path, overrides={"services.images": "s3"}, environ={})
    with pytest.raises(ServiceUnavailableError, match="pip install invokeai-s3"):
        Services(config, invokeai_host.service_registry).get("images")


class _ServicesPlugin:
    """A plugin object registering implementations given as (kind, name, path, install_hint)."""

    def __init__(self, *impls: tuple[str, str, str, str | None], default: bool = False) -> None:
        self.impls = impls
        self.default = default

    @hookimpl
    def register_services(self, register: Any) -> None:
        for kind, name, path, hint in self.impls:
            register(kind, name, path, description=f"test {name}", install_hint=hint, default=self.default)


def test_missing_module_gives_the_install_hint(invokeai_host, invokeai_register_plugin, tmp_path: Path):
    hint = "pip install s-definitely-not-installed"
    info = invokeai_register_plugin(
        _ServicesPlugin(("images", "s_broken", "s_no_such_module_xyz.store:Store", hint)), "s_broken_plugin"
    )
    assert info.status == "loaded", info.error
    config = load_config(root=tmp_path, overrides={"services.images": "s_broken"}, environ={})
    with pytest.raises(ServiceUnavailableError) as err:
        Services(config, invokeai_host.service_registry).build_all()
    assert hint in str(err.value)
    assert "s_no_such_module_xyz" in str(err.value)
    assert "s_broken_plugin" in str(err.value)


def _write_module(folder: Path, name: str, source: str) -> None:
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def test_implementation_modules_are_imported_only_when_selected(
    invokeai_host, invokeai_register_plugin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    module = "s_lazy_images_impl"
    _write_module(
        tmp_path,
        module,
        """
        from invokeai_core.services.images_local import LocalImageFileStorage

        class LazyStore(LocalImageFileStorage):
            pass
        """,
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    invokeai_register_plugin(_ServicesPlugin(("images", "s_lazy", f"{module}:LazyStore", None)), "s_lazy_plugin")
    root = tmp_path / "root"

    services = Services(load_config(root=root, environ={}), invokeai_host.service_registry)
    services.build_all()
    services.get(ImageFileStorageBase)
    assert module not in sys.modules
    assert type(services.images).__name__ == "LocalImageFileStorage"

    selected = Services(
        load_config(root=root, overrides={"services.images": "s_lazy"}, environ={}),
        invokeai_host.service_registry,
    )
    store = selected.images
    assert module in sys.modules
    assert type(store).__name__ == "LazyStore"
    assert isinstance(store, ImageFileStorageBase)
    monkeypatch.delitem(sys.modules, module, raising=False)


def test_implementation_of_the_wrong_kind_is_refused(invokeai_host, invokeai_register_plugin, tmp_path: Path):
    invokeai_register_plugin(
        _ServicesPlugin(("images", "s_wrong", "invokeai_core.services.memory:MemoryOutputCache", None)),
        "s_wrong_plugin",
    )
    config = load_config(root=tmp_path, overrides={"services.images": "s_wrong"}, environ={})
    with pytest.raises(ServiceUnavailableError, match="not a ImageFileStorageBase"):
        Services(config, invokeai_host.service_registry).get("images")


def test_services_get_by_kind_and_by_abc(invokeai_host, tmp_path: Path):
    services = Services(load_config(root=tmp_path, environ={}), invokeai_host.service_registry)
    assert services.get(ObjectStorageBase) is services.get("objects") is services.objects
    assert isinstance(services.objects, MemoryObjectStorage)

    class Unprovided:
        pass

    with pytest.raises(ServiceUnavailableError, match="Unprovided"):
        services.get(Unprovided)
    with pytest.raises(TypeError):
        services.get(42)  # type: ignore[call-overload]


def test_preset_instances_are_used(invokeai_host, tmp_path: Path):
    records = MemoryImageRecordStorage()
    services = Services(
        load_config(root=tmp_path, environ={}),
        invokeai_host.service_registry,
        instances={"image_records": records},
    )
    assert services.image_records is records
    assert services.image_service.records is records


GREETER_MODULE = """
from abc import ABC, abstractmethod


class GreeterBase(ABC):
    @abstractmethod
    def greet(self, name: str) -> str: ...


class Greeter(GreeterBase):
    def __init__(self, config):
        self.prefix = config.plugin_settings("s_greeter").get("prefix", "Hello")

    def greet(self, name: str) -> str:
        return f"{self.prefix}, {name}!"
"""


def test_context_services_get_returns_a_plugin_service(
    invokeai_register_plugin,
    invokeai_register_nodes,
    invokeai_run_graph,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    module = "s_greeter_service"
    _write_module(tmp_path, module, GREETER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, module, raising=False)
    greeter_module = __import__(module)
    greeter_base = greeter_module.GreeterBase

    invokeai_register_plugin(
        _ServicesPlugin(("s_greeter", "default", f"{module}:Greeter", None), default=True), "s_greeter_plugin"
    )
    seen: dict[str, Any] = {}

    @invocation_output("s_greeting_output")
    class GreetingOutput(BaseInvocationOutput):
        text: str = OutputField()

    @invocation("s_greet", use_cache=False)
    class GreetInvocation(BaseInvocation):
        name: str = InputField(default="world")

        def invoke(self, context: InvocationContext) -> GreetingOutput:
            by_abc = context.services.get(greeter_base)
            by_kind = context.services.get("s_greeter")
            seen["same"] = by_abc is by_kind
            seen["type"] = type(by_abc)
            return GreetingOutput(text=by_abc.greet(self.name))

    invokeai_register_nodes(GreetInvocation)
    run = invokeai_run_graph({"nodes": {"g": {"id": "g", "type": "s_greet", "name": "Ada"}}, "edges": []})
    assert run.status == "completed", run.errors
    assert run["g"].text == "Hello, Ada!"
    assert seen == {"same": True, "type": greeter_module.Greeter}

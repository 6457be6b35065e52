"""Service contract tests, written once and run against every implementation.

Each class holds the tests of one service kind and no fixture of its own for the store: a backend's
test module subclasses it and provides the store (the kernel runs them against its memory and
SQLite stores; a plugin runs them against its own):

    from invokeai_core.testing.contracts import SessionStoreContract

    class TestMySessions(SessionStoreContract):
        persistent = True

        @pytest.fixture
        def store(self, tmp_path, contract_registry):
            return MySessionStorage(url=..., registry=contract_registry)

        def reopen(self, store):
            return MySessionStorage(url=store.url, registry=store.registry)

* `ImageFileStoreContract`: a `store` fixture; optionally `stored_files(store)`.
* `ImageRecordStoreContract`: a `store` fixture; persistent stores set `persistent = True` and
  implement `reopen(store)`.
* `SessionStoreContract`: a `store` fixture parsing sessions against `contract_registry`;
  `persistent` and `reopen(store)` likewise.
* `WorkflowStoreContract`: a `store` fixture checking workflows against `contract_registry`;
  `persistent` and `reopen(store)` likewise.
* `SessionQueueContract`: a `make_queue` fixture, `make_queue(max_size)` returning a queue on
  fresh, empty storage that parses batches against `contract_registry`; `persistent` and
  `reopen(queue)` likewise.

`reopen` returns a new store instance on the same storage, as a restarted process would see it.
The nodes used here (`contract_add`, `contract_mul`, `contract_const`) are registered only in the
`contract_registry` fixture's registry, never globally.
"""

from __future__ import annotations

import enum
import io
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from invokeai_core.batch import Batch, BatchDatum
from invokeai_core.errors import BatchError, InvalidTextError, SessionNotFoundError
from invokeai_core.events import EventBase, InProcessEventBus
from invokeai_core.graph import Graph
from invokeai_core.invocations.baseinvocation import (
    BaseInvocation,
    BaseInvocationOutput,
    invocation,
    invocation_output,
)
from invokeai_core.invocations.fields import InputField, OutputField
from invokeai_core.registry import NodeRegistry
from invokeai_core.services.base import (
    BatchNotFoundError,
    ImageFileStorageBase,
    ImageRecord,
    ImageRecordStorageBase,
    InvalidQueueIdError,
    QueueError,
    QueueFullError,
    QueueItemNotFoundError,
    QueueItemNotPendingError,
    SessionQueueBase,
    SessionStorageBase,
    WorkflowStorageBase,
)
from invokeai_core.services.image_service import ImageService
from invokeai_core.services.memory import MemoryImageRecordStorage
from invokeai_core.session import NodeError, Session
from invokeai_core.testing import skip_by_choice
from invokeai_core.workflows import WorkflowError, WorkflowInputError, WorkflowNotFoundError

__all__ = [
    "UNENCODABLE_TEXT",
    "ImageFileStoreContract",
    "ImageRecordStoreContract",
    "ImageService",
    "MemoryImageRecordStorage",
    "SessionQueueContract",
    "SessionStoreContract",
    "WorkflowStoreContract",
    "checker_image",
    "contract_batch",
    "contract_node_registry",
    "contract_workflow",
    "image_pixels",
    "run_in_store",
]


# == nodes and helpers ===============================================================================
#: Text no UTF-8 store can hold: lone surrogates (what a JSON `"\\ud800"` escape, a reversed pair, or
#: bytes that were not UTF-8 decoded with `surrogateescape` become). A store refuses it with
#: `InvalidTextError` and stores nothing, or gives back exactly what it was given.
UNENCODABLE_TEXT = ["\ud800", "a\udfffb", "\ude00\ud83d", "caf\udce9"]


@invocation_output("contract_int_output")
class ContractIntOutput(BaseInvocationOutput):
    value: int = OutputField(description="A number")


@invocation("contract_add", version="1.0.0")
class ContractAdd(BaseInvocation):
    """Adds two numbers."""

    a: int = InputField(default=0, description="First")
    b: int = InputField(default=0, description="Second")

    def invoke(self, context: Any) -> ContractIntOutput:
        return ContractIntOutput(value=self.a + self.b)


@invocation("contract_mul", version="1.0.0")
class ContractMul(BaseInvocation):
    """Multiplies two numbers."""

    a: int = InputField(default=1, description="First")
    b: int = InputField(default=1, description="Second")

    def invoke(self, context: Any) -> ContractIntOutput:
        return ContractIntOutput(value=self.a * self.b)


@invocation_output("contract_list_output")
class ContractListOutput(BaseInvocationOutput):
    collection: list[int] = OutputField(description="Numbers")


@invocation("contract_range", version="1.0.0")
class ContractRange(BaseInvocation):
    """0 .. size-1."""

    size: int = InputField(default=3, description="How many")

    def invoke(self, context: Any) -> ContractListOutput:
        return ContractListOutput(collection=list(range(self.size)))


class ContractColor(enum.Enum):
    RED = "red"
    BLUE = "blue"


@invocation("contract_paint", version="1.0.0")
class ContractPaint(BaseInvocation):
    """A node with an enum input (batch values must be stored as JSON)."""

    color: ContractColor = InputField(default=ContractColor.RED, description="The color")

    def invoke(self, context: Any) -> ContractIntOutput:
        return ContractIntOutput(value=len(self.color.value))


def contract_node_registry() -> NodeRegistry:
    """A registry with the contract nodes and the flow nodes (`iterate`, `collect`)."""
    from invokeai_core.invocations.flow import CollectInvocation, IterateInvocation

    registry = NodeRegistry()
    for cls in (ContractAdd, ContractMul, ContractRange, ContractPaint):
        registry.add(cls, "contract")
    registry.add(IterateInvocation, "core")
    registry.add(CollectInvocation, "core")
    return registry


class _WithRegistry:
    @pytest.fixture
    def contract_registry(self) -> NodeRegistry:
        """A fresh registry with the contract nodes (see `contract_node_registry`)."""
        return contract_node_registry()


def image_pixels(image: Image.Image) -> bytes:
    return image.convert("RGBA").tobytes()


def checker_image(size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, (10, 20, 30))
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            image.putpixel((x, y), (250, (x * 3) % 256, (y * 5) % 256))
    return image.convert(mode)


_pixels = image_pixels
_checker = checker_image


# == image file store contract ======================================================================
class ImageFileStoreContract:
    """Subclass with a `store` fixture to run the contract against another image file store."""

    @pytest.fixture
    def store(self) -> ImageFileStorageBase:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def stored_files(self, store: ImageFileStorageBase) -> set[str] | None:
        """Every file (object key) the store holds, or None if the store cannot list them."""
        return None

    def test_save_and_get_round_trip(self, store: ImageFileStorageBase) -> None:
        image = _checker()
        store.save("one.png", image)
        loaded = store.get("one.png")
        assert loaded.size == image.size
        assert loaded.mode == "RGB"
        assert _pixels(loaded) == _pixels(image)

    @pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1"])
    def test_modes_round_trip(self, store: ImageFileStorageBase, mode: str) -> None:
        image = _checker(mode=mode)
        store.save(f"mode_{mode}.png", image)
        loaded = store.get(f"mode_{mode}.png")
        assert loaded.mode == mode
        assert _pixels(loaded) == _pixels(image)

    def test_exists_and_delete(self, store: ImageFileStorageBase) -> None:
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

    def test_missing_image_raises_key_error(self, store: ImageFileStorageBase) -> None:
        with pytest.raises(KeyError):
            store.get("never.png")
        with pytest.raises(KeyError):
            store.get_bytes("never.png")

    def test_get_bytes_is_a_png_with_metadata_text_chunks(self, store: ImageFileStorageBase) -> None:
        metadata = {"invokeai_graph": json.dumps({"nodes": {}, "edges": []}), "note": "héllo wörld"}
        store.save("meta.png", _checker(), metadata=metadata)
        data = store.get_bytes("meta.png")
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as png:
            assert png.format == "PNG"
            assert dict(png.text) == metadata  # type: ignore[attr-defined]
        loaded = store.get("meta.png")
        assert loaded.info["note"] == "héllo wörld"

    def test_thumbnail(self, store: ImageFileStorageBase) -> None:
        store.save("big.png", _checker((600, 300)), thumbnail_size=128)
        data = store.get_bytes("big.png", thumbnail=True)
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
        with Image.open(io.BytesIO(data)) as thumb:
            assert thumb.size == (128, 64)
        store.save("small.png", _checker((40, 20)))
        with Image.open(io.BytesIO(store.get_bytes("small.png", thumbnail=True))) as thumb:
            assert thumb.size == (40, 20)  # never enlarged

    def test_overwrite_replaces_the_image(self, store: ImageFileStorageBase) -> None:
        store.save("same.png", Image.new("RGB", (8, 8), "red"))
        store.save("same.png", Image.new("RGB", (9, 7), "blue"))
        loaded = store.get("same.png")
        assert loaded.size == (9, 7)
        assert loaded.getpixel((0, 0)) == (0, 0, 255)

    def test_get_path_is_none_or_the_file(self, store: ImageFileStorageBase) -> None:
        store.save("path.png", _checker())
        path = store.get_path("path.png")
        if path is not None:
            assert Path(path).is_file()
            assert Path(path).read_bytes() == store.get_bytes("path.png")
            thumb = store.get_path("path.png", thumbnail=True)
            assert thumb is not None and Path(thumb).read_bytes() == store.get_bytes("path.png", thumbnail=True)

    @pytest.mark.parametrize("name", ["../escape.png", "a/b.png", ".hidden.png", ""])
    def test_unsafe_names_are_refused(self, store: ImageFileStorageBase, name: str) -> None:
        with pytest.raises(KeyError):
            store.save(name, _checker())
        assert not store.exists(name)

    def test_no_temporary_files_are_left(self, store: ImageFileStorageBase) -> None:
        for i in range(3):
            store.save(f"t{i}.png", _checker(), metadata={"i": str(i)})
        store.delete("t1.png")
        files = self.stored_files(store)
        if files is None:
            skip_by_choice("this store cannot list its files")
        assert not [f for f in files if f.endswith(".tmp") or Path(f).name.startswith(".")]
        assert len(files) == 4  # two images, two thumbnails

    def test_failed_save_leaves_nothing(self, store: ImageFileStorageBase) -> None:
        with pytest.raises(OSError):
            store.save("float.png", Image.new("F", (8, 8)))  # PNG cannot hold 32-bit float pixels
        assert not store.exists("float.png")
        files = self.stored_files(store)
        if files is not None:
            assert files == set()


# == image records contract ==========================================================================
class ImageRecordStoreContract(_WithRegistry):
    """Subclass with a `store` fixture (fresh, empty storage) to run the contract."""

    #: Set by stores that survive a restart; they implement `reopen`.
    persistent = False

    @pytest.fixture
    def store(self) -> ImageRecordStorageBase:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def reopen(self, store: ImageRecordStorageBase) -> ImageRecordStorageBase:
        """A new instance on the same storage (persistent stores only)."""
        raise NotImplementedError

    @staticmethod
    def record(name: str, **kw: Any) -> ImageRecord:
        return ImageRecord(image_name=name, width=kw.pop("width", 8), height=kw.pop("height", 8), **kw)

    def test_save_and_get(self, store: ImageRecordStorageBase) -> None:
        rec = self.record("a.png", width=64, height=32, session_id="s1", node_id="n1", metadata={"seed": 1})
        store.save(rec)
        got = store.get("a.png")
        assert got.model_dump() == rec.model_dump()
        with pytest.raises(KeyError):
            store.get("nope.png")

    @pytest.mark.parametrize("text", UNENCODABLE_TEXT)
    def test_unencodable_text_is_refused_or_round_trips(self, store: ImageRecordStorageBase, text: str) -> None:
        rec = self.record("t.png", session_id=text, node_id=text, metadata={"prompt": text, text: 1})
        try:
            store.save(rec)
        except InvalidTextError:
            with pytest.raises(KeyError):
                store.get("t.png")
            assert store.list().items == []
            return
        assert store.get("t.png").model_dump() == rec.model_dump()

    def test_update_star_and_intermediate(self, store: ImageRecordStorageBase) -> None:
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

    def test_list_newest_first_with_pagination(self, store: ImageRecordStorageBase) -> None:
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

    def test_newest_first_is_by_creation_time_not_insertion(self, store: ImageRecordStorageBase) -> None:
        store.save(self.record("new.png", created_at="2024-05-01T00:00:00.000+00:00"))
        store.save(self.record("old.png", created_at="2020-01-01T00:00:00.000+00:00"))
        assert [r.image_name for r in store.list().items] == ["new.png", "old.png"]

    def test_same_timestamp_keeps_insertion_order_newest_first(self, store: ImageRecordStorageBase) -> None:
        for name in ("first.png", "second.png", "third.png"):
            store.save(self.record(name, created_at="2024-01-01T00:00:00.000+00:00"))
        assert [r.image_name for r in store.list().items] == ["third.png", "second.png", "first.png"]

    def test_list_filters(self, store: ImageRecordStorageBase) -> None:
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

    def test_delete(self, store: ImageRecordStorageBase) -> None:
        store.save(self.record("a.png"))
        store.save(self.record("b.png"))
        store.delete("a.png")
        with pytest.raises(KeyError):
            store.get("a.png")
        assert [r.image_name for r in store.list().items] == ["b.png"]
        store.delete("a.png")  # already gone: no error

    def test_graph_and_metadata_round_trip(self, store: ImageRecordStorageBase) -> None:
        graph = {"nodes": {"n": {"id": "n", "type": "contract_add", "a": 1}}, "edges": []}
        meta = {"seed": 123, "prompt": "a cat ü", "nested": {"cfg": 7.5, "list": [1, None, True]}}
        store.save(self.record("g.png", metadata=meta, graph=graph, is_intermediate=False))
        got = store.get("g.png")
        assert got.graph == graph and got.metadata == meta and got.is_intermediate is False
        store.save(self.record("plain.png"))
        assert store.get("plain.png").graph is None and store.get("plain.png").metadata is None

    def test_resaving_a_record_replaces_it_and_makes_it_newest(self, store: ImageRecordStorageBase) -> None:
        t = "2024-01-01T00:00:00.000+00:00"
        store.save(self.record("a.png", created_at=t))
        store.save(self.record("b.png", created_at=t))
        store.save(self.record("a.png", created_at=t, width=99))
        assert [r.image_name for r in store.list().items] == ["a.png", "b.png"]
        assert store.get("a.png").width == 99
        assert store.list().total == 2

    def test_records_survive_a_restart(self, store: ImageRecordStorageBase) -> None:
        if not self.persistent:
            skip_by_choice("this store does not persist")
        store.save(self.record("a.png", session_id="s", metadata={"k": [1, 2]}, created_at="2024-01-01T00:00:01Z"))
        store.save(self.record("b.png", created_at="2024-01-01T00:00:02Z"))
        store.update("a.png", starred=True)
        before = [r.model_dump() for r in store.list().items]
        again = self.reopen(store)
        assert [r.model_dump() for r in again.list().items] == before
        assert again.get("a.png").starred is True


# == session store contract ==========================================================================
def _session(registry: NodeRegistry, *types: str, created_at: str | None = None) -> Session:
    graph = Graph(registry)
    for i, type_id in enumerate(types):
        graph.add_node({"id": f"n{i}", "type": type_id})
    session = Session(graph)
    if created_at is not None:
        session.created_at = created_at
    return session


def _edge(s: str, sf: str, d: str, df: str) -> dict[str, Any]:
    return {"source": {"node_id": s, "field": sf}, "destination": {"node_id": d, "field": df}}


def _chain_session(registry: NodeRegistry, n: int) -> Session:
    nodes = {f"n{i}": {"id": f"n{i}", "type": "contract_add", "b": 1} for i in range(n)}
    edges = [_edge(f"n{i}", "value", f"n{i + 1}", "a") for i in range(n - 1)]
    return Session(Graph.from_dict({"nodes": nodes, "edges": edges}, registry))


def _iterate_session(registry: NodeRegistry) -> Session:
    graph = {
        "nodes": {
            "range": {"id": "range", "type": "contract_range", "size": 3},
            "each": {"id": "each", "type": "iterate"},
            "times": {"id": "times", "type": "contract_mul", "b": 10},
            "gather": {"id": "gather", "type": "collect"},
        },
        "edges": [
            _edge("range", "collection", "each", "collection"),
            _edge("each", "item", "times", "a"),
            _edge("times", "value", "gather", "item"),
        ],
    }
    return Session(Graph.from_dict(graph, registry))


def run_in_store(store: SessionStorageBase, session: Session, *, limit: int | None = None) -> int:
    """Run a session's nodes (contract nodes need no context), persisting each as the Invoker does."""
    ran = 0
    while limit is None or ran < limit:
        prepared = session.next()
        if prepared is None:
            break
        session.complete(prepared.key, prepared.invocation.invoke(None))  # type: ignore[arg-type]
        store.node_completed(session, prepared.id)
        ran += 1
    return ran


class SessionStoreContract(_WithRegistry):
    """Subclass with a `store` fixture (fresh, empty storage, sessions parsed against
    `contract_registry`) to run the contract."""

    #: Set by stores that survive a restart; they implement `reopen`.
    persistent = False

    @pytest.fixture
    def store(self) -> SessionStorageBase:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def reopen(self, store: SessionStorageBase) -> SessionStorageBase:
        """A new instance on the same storage (persistent stores only)."""
        raise NotImplementedError

    def fresh(self, store: SessionStorageBase) -> SessionStorageBase:
        """The store as another process sees it once this one committed what it buffers (`flush`)."""
        store.flush()
        return self.reopen(store) if self.persistent else store

    def test_save_get_delete(self, store: SessionStorageBase, contract_registry: NodeRegistry) -> None:
        session = _session(contract_registry, "contract_add")
        store.save(session)
        assert store.get(session.id).to_dict() == session.to_dict()
        assert self.fresh(store).get(session.id).to_dict() == session.to_dict()
        store.delete(session.id)
        with pytest.raises(SessionNotFoundError):
            store.get(session.id)
        if self.persistent:
            with pytest.raises(SessionNotFoundError):
                self.reopen(store).get(session.id)
        store.delete(session.id)  # deleting again is not an error
        with pytest.raises(SessionNotFoundError):
            store.get("no-such-session")

    @pytest.mark.parametrize("text", UNENCODABLE_TEXT)
    def test_unencodable_text_is_refused_or_round_trips(
        self, store: SessionStorageBase, contract_registry: NodeRegistry, text: str
    ) -> None:
        # in the session id (graphs refuse such node ids and JSON themselves, with a NodeFieldError)
        new = Session(Graph(contract_registry), id=f"s{text}")
        new.graph.add_node(ContractAdd(id="n0"))
        try:
            store.save(new)
        except InvalidTextError:
            for reader in (store, self.fresh(store)):
                with pytest.raises((SessionNotFoundError, InvalidTextError)):  # no such id can be stored
                    reader.get(new.id)
        else:
            assert self.fresh(store).get(new.id).to_dict() == new.to_dict()
        # in a stored session's node error (an exception's message can carry any text): refused with
        # the stored session unchanged, or kept
        session = _session(contract_registry, "contract_add")
        store.save(session)
        before = session.to_dict()
        error = NodeError(node_id="n0", source_node_id="n0", type="OSError", message=f"no file {text}", traceback="")
        session.set_error(("n0", ()), error)
        try:
            store.save(session)
        except InvalidTextError:
            if self.persistent:
                assert self.reopen(store).get(session.id).to_dict() == before
        else:
            assert self.fresh(store).get(session.id).to_dict() == session.to_dict()

    def test_list_query_and_pagination(self, store: SessionStorageBase, contract_registry: NodeRegistry) -> None:
        registry = contract_registry
        sessions = [
            _session(registry, "contract_add", created_at="2024-01-01T00:00:01.000+00:00"),
            _session(registry, "contract_mul", "contract_mul", created_at="2024-01-01T00:00:02.000+00:00"),
            _session(registry, "contract_add", "contract_mul", created_at="2024-01-01T00:00:03.000+00:00"),
            _session(registry, created_at="2024-01-01T00:00:04.000+00:00"),
        ]
        for s in sessions:
            store.save(s)
        page = store.list()
        assert [i.id for i in page.items] == [s.id for s in reversed(sessions)]
        assert page.total == 4
        assert [i.nodes for i in page.items] == [0, 2, 2, 1]
        assert page.items[1].status == "pending"
        assert page.items[0].status == "completed"  # an empty session is complete

        page = store.list(offset=1, limit=2)
        assert [i.id for i in page.items] == [sessions[2].id, sessions[1].id]
        assert (page.offset, page.limit, page.total) == (1, 2, 4)

        assert [i.id for i in store.list(query="contract_mul").items] == [sessions[2].id, sessions[1].id]
        assert [i.id for i in store.list(query="contract_add").items] == [sessions[2].id, sessions[0].id]
        assert [i.id for i in store.list(query="_mul").items] == [sessions[2].id, sessions[1].id]
        assert [i.id for i in store.list(query=sessions[3].id[:12]).items] == [sessions[3].id]
        assert store.list(query="no-such-thing").total == 0
        assert store.list(query="contract_mul", limit=1).total == 2

        # saving again (after a node ran) does not reorder
        store.save(sessions[0])
        assert store.list().items[-1].id == sessions[0].id
        if self.persistent:
            assert [i.id for i in self.reopen(store).list().items] == [s.id for s in reversed(sessions)]

    def test_same_creation_time_lists_newest_saved_first(
        self, store: SessionStorageBase, contract_registry: NodeRegistry
    ) -> None:
        t = "2024-01-01T00:00:00.000+00:00"
        sessions = [_session(contract_registry, "contract_add", created_at=t) for _ in range(3)]
        for s in sessions:
            store.save(s)
        assert [i.id for i in store.list().items] == [s.id for s in reversed(sessions)]

    def test_results_persist_node_by_node(self, store: SessionStorageBase, contract_registry: NodeRegistry) -> None:
        session = _chain_session(contract_registry, 5)
        store.save(session)
        assert run_in_store(store, session, limit=2) == 2
        partial = self.fresh(store).get(session.id)
        assert [k[0] for k in partial.history] == ["n0", "n1"]
        assert partial.results_by_source()["n1"].value == 2
        assert partial.status == "running"
        assert next(i for i in store.list().items if i.id == session.id).status == "running"
        run_in_store(store, session)
        done = self.fresh(store).get(session.id)
        assert done.status == "completed"
        assert done.to_dict() == session.to_dict()
        assert done.results_by_source()["n4"].value == 5
        assert next(i for i in store.list().items if i.id == session.id).status == "completed"

    def test_a_resumed_session_continues_where_it_stopped(
        self, store: SessionStorageBase, contract_registry: NodeRegistry
    ) -> None:
        session = _chain_session(contract_registry, 4)
        store.save(session)
        run_in_store(store, session, limit=1)
        resumed = self.fresh(store).get(session.id)
        run_in_store(store, resumed)
        final = self.fresh(store).get(session.id)
        assert [k[0] for k in final.history] == ["n0", "n1", "n2", "n3"]
        assert final.results_by_source()["n3"].value == 4

    def test_iterations_round_trip(self, store: SessionStorageBase, contract_registry: NodeRegistry) -> None:
        session = _iterate_session(contract_registry)
        store.save(session)
        run_in_store(store, session)
        assert session.status == "completed"
        again = self.fresh(store).get(session.id)
        assert again.to_dict() == session.to_dict()
        assert again.results_by_source()["gather"].collection == [0, 10, 20]
        assert [o.value for o in again.results_by_source()["times"]] == [0, 10, 20]

    def test_errors_and_cancel_persist(self, store: SessionStorageBase, contract_registry: NodeRegistry) -> None:
        failed = _chain_session(contract_registry, 3)
        store.save(failed)
        run_in_store(store, failed, limit=1)
        prepared = failed.next()
        assert prepared is not None
        failed.set_error(prepared.key, NodeError.from_exception(prepared.id, RuntimeError("broken")))
        store.save(failed)
        got = self.fresh(store).get(failed.id)
        assert got.status == "failed"
        assert got.errors_by_source()["n1"].message == "broken"
        assert got.errors_by_source()["n1"].type == "RuntimeError"

        canceled = _chain_session(contract_registry, 2)
        store.save(canceled)
        canceled.canceled = True
        store.save(canceled)
        assert self.fresh(store).get(canceled.id).status == "canceled"
        statuses = {i.id: i.status for i in store.list().items}
        assert statuses[failed.id] == "failed" and statuses[canceled.id] == "canceled"

    def test_appended_nodes_persist(self, store: SessionStorageBase, contract_registry: NodeRegistry) -> None:
        session = _chain_session(contract_registry, 2)
        store.save(session)
        run_in_store(store, session)
        session.add_node({"id": "more", "type": "contract_mul", "b": 3})
        session.add_edge(_edge("n1", "value", "more", "a"))
        store.save(session)
        run_in_store(store, session)
        got = self.fresh(store).get(session.id)
        assert got.results_by_source()["more"].value == 6
        assert got.to_dict() == session.to_dict()
        assert next(i for i in store.list().items if i.id == session.id).nodes == 3

    def test_saving_another_copy_of_a_session_replaces_it(
        self, store: SessionStorageBase, contract_registry: NodeRegistry
    ) -> None:
        session = _chain_session(contract_registry, 3)
        store.save(session)
        run_in_store(store, session)
        copy = Session.from_dict(session.to_dict(), contract_registry)
        store.save(copy)
        assert self.fresh(store).get(session.id).to_dict() == session.to_dict()
        fresh_start = Session.from_dict({**session.to_dict(), "results": {}, "history": []}, contract_registry)
        store.save(fresh_start)
        assert self.fresh(store).get(session.id).history == []


# == session queue contract ==========================================================================
QUEUE = "default"


def contract_batch(
    values: list[int] | None = None, *, priority: int = 0, runs: int = 1, batch_id: str | None = None
) -> Batch:
    """A batch of `contract_add` sessions, one per value of `a` (or `runs` sessions when no values)."""
    data = [[BatchDatum(node_path="n", field_name="a", items=list(values))]] if values else []
    kwargs: dict[str, Any] = {"batch_id": batch_id} if batch_id else {}
    return Batch(
        graph={"nodes": {"n": {"id": "n", "type": "contract_add", "a": 0, "b": 100}}, "edges": []},
        data=data,
        runs=runs,
        priority=priority,
        **kwargs,
    )


def _a_values(q: SessionQueueBase, ids: list[int]) -> list[int]:
    return [q.get_item(i).graph["nodes"]["n"]["a"] for i in ids]


def _snapshot(q: SessionQueueBase, queue_id: str = QUEUE) -> list[dict[str, Any]]:
    return [i.model_dump() for i in q.list_items(queue_id, limit=100_000)]


class SessionQueueContract(_WithRegistry):
    """Subclass with a `make_queue` fixture: `make_queue(max_size)` returns a queue on fresh, empty
    storage whose batches are parsed against `contract_registry`."""

    #: Set by queues that survive a restart; they implement `reopen`.
    persistent = False

    @pytest.fixture
    def make_queue(self) -> Callable[[int], SessionQueueBase]:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    @pytest.fixture
    def queue(self, make_queue: Callable[[int], SessionQueueBase]) -> SessionQueueBase:
        return make_queue(20)

    def reopen(self, queue: SessionQueueBase) -> SessionQueueBase:
        """A new instance on the same storage (persistent queues only)."""
        raise NotImplementedError

    # -- enqueue --------------------------------------------------------------------------------
    def test_enqueue_batch(self, queue: SessionQueueBase) -> None:
        result = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3], batch_id="b1"))
        assert (result.queue_id, result.batch_id, result.enqueued, result.requested) == (QUEUE, "b1", 3, 3)
        assert len(result.item_ids) == 3
        items = [queue.get_item(i) for i in result.item_ids]
        assert [i.status for i in items] == ["pending"] * 3
        assert _a_values(queue, result.item_ids) == [1, 2, 3]
        assert [i.field_values for i in items] == [
            [{"node_path": "n", "field_name": "a", "value": v}] for v in (1, 2, 3)
        ]
        assert len({i.session_id for i in items}) == 3
        assert all(i.graph["nodes"]["n"]["b"] == 100 for i in items)
        assert all(i.queue_id == QUEUE and i.batch_id == "b1" for i in items)
        assert all(i.started_at is None and i.completed_at is None and i.error_type is None for i in items)
        assert queue.status(QUEUE).pending == 3

    @pytest.mark.parametrize("text", UNENCODABLE_TEXT)
    def test_unencodable_text_is_refused_or_round_trips(self, queue: SessionQueueBase, text: str) -> None:
        try:
            result = queue.enqueue_batch(QUEUE, contract_batch([1], batch_id=text))
        except InvalidTextError:
            assert _snapshot(queue) == []
            with pytest.raises((BatchNotFoundError, InvalidTextError)):
                queue.cancel_batch(QUEUE, [text])
            return
        assert queue.get_item(result.item_ids[0]).batch_id == text
        assert queue.cancel_batch(QUEUE, [text]) == result.item_ids

    def test_enqueue_batch_with_runs_and_no_data(self, queue: SessionQueueBase) -> None:
        result = queue.enqueue_batch(QUEUE, contract_batch(runs=3))
        assert result.enqueued == 3
        assert len({queue.get_item(i).session_id for i in result.item_ids}) == 3

    def test_batch_expansion_order_is_exact(self, queue: SessionQueueBase, contract_registry: NodeRegistry) -> None:
        graph = {
            "nodes": {"x": {"id": "x", "type": "contract_add"}, "y": {"id": "y", "type": "contract_mul"}},
            "edges": [],
        }
        batch = Batch(
            graph=graph,
            data=[
                [
                    BatchDatum(node_path="x", field_name="a", items=[1, 2]),
                    BatchDatum(node_path="x", field_name="b", items=[10, 20]),
                ],
                [BatchDatum(node_path="y", field_name="a", items=[7, 8, 9])],
            ],
            runs=2,
        )
        ids = queue.enqueue_batch(QUEUE, batch).item_ids
        assert len(ids) == 12
        got = [
            (g["nodes"]["x"]["a"], g["nodes"]["x"]["b"], g["nodes"]["y"]["a"])
            for g in (queue.get_item(i).graph for i in ids)
        ]
        one_run = [(a, b, y) for (a, b) in [(1, 10), (2, 20)] for y in (7, 8, 9)]
        assert got == one_run * 2  # runs outermost, the last group varying fastest, groups zipped
        expected = [
            [(e["node_path"], e["field_name"], e["value"]) for e in v] for _, _, v in batch.expand(contract_registry)
        ]
        assert [
            [(e["node_path"], e["field_name"], e["value"]) for e in queue.get_item(i).field_values] for i in ids
        ] == expected
        assert [i.item_id for i in queue.list_items(QUEUE, limit=100)] == ids  # queue order = expansion order

    def test_batch_values_are_stored_as_json(self, queue: SessionQueueBase) -> None:
        graph = {"nodes": {"p": {"id": "p", "type": "contract_paint"}}, "edges": []}
        batch = Batch(graph=graph, data=[[BatchDatum(node_path="p", field_name="color", items=["blue", "red"])]])
        ids = queue.enqueue_batch(QUEUE, batch).item_ids
        items = [queue.get_item(i) for i in ids]
        assert [i.field_values[0]["value"] for i in items] == ["blue", "red"]
        assert [i.graph["nodes"]["p"]["color"] for i in items] == ["blue", "red"]
        json.dumps([i.model_dump(mode="json") for i in items])
        assert json.loads(json.dumps(items[0].field_values)) == items[0].field_values

    def test_enqueue_a_batch_as_json(self, queue: SessionQueueBase) -> None:
        data = contract_batch([4, 5]).model_dump(mode="json")
        result = queue.enqueue_batch(QUEUE, data)
        assert _a_values(queue, result.item_ids) == [4, 5]

    @pytest.mark.parametrize(
        "bad",
        [
            {
                "graph": {"nodes": {"n": {"id": "n", "type": "contract_add"}}, "edges": []},
                "data": [[{"node_path": "n", "field_name": "zzz", "items": [1]}]],
            },
            {"graph": {"nodes": {"n": {"id": "n", "type": "no_such_type"}}, "edges": []}},
            {
                "graph": {"nodes": {"n": {"id": "n", "type": "contract_add"}}, "edges": []},
                "data": [[{"node_path": "n", "field_name": "a", "items": ["x"]}]],
            },
            {
                "graph": {"nodes": {"n": {"id": "n", "type": "contract_add"}}, "edges": []},
                "data": [
                    [
                        {"node_path": "n", "field_name": "a", "items": [1, 2]},
                        {"node_path": "n", "field_name": "b", "items": [1]},
                    ]
                ],
            },
            {"graph": {"nodes": {"n": {"id": "n", "type": "contract_add"}}, "edges": []}, "runs": 0},
            {"graph": {"nodes": {"n": {"id": "n", "type": "contract_add"}}, "edges": []}, "unknown_key": 1},
            {"data": []},
            ["not", "an", "object"],
        ],
        ids=[
            "unknown-field",
            "unknown-type",
            "bad-value",
            "ragged",
            "zero-runs",
            "unknown-key",
            "no-graph",
            "not-object",
        ],
    )
    def test_a_malformed_batch_is_refused_and_changes_nothing(self, queue: SessionQueueBase, bad: Any) -> None:
        queue.enqueue_batch(QUEUE, contract_batch([1]))
        before = _snapshot(queue)
        with pytest.raises(BatchError) as info:
            queue.enqueue_batch(QUEUE, bad)
        assert str(info.value).startswith("batch: ")
        assert _snapshot(queue) == before
        assert queue.status(QUEUE).total == 1

    @pytest.mark.parametrize("queue_id", ["", " default", "a/b", "x" * 200, "-lead", None, 3])
    def test_malformed_queue_ids_are_refused(self, queue: SessionQueueBase, queue_id: Any) -> None:
        with pytest.raises(InvalidQueueIdError, match="invalid queue id"):
            queue.enqueue_batch(queue_id, contract_batch([1]))
        for call in (
            queue.status,
            queue.list_items,
            queue.clear,
            queue.prune,
            queue.pause,
            queue.cancel_all_except_current,
        ):
            with pytest.raises(InvalidQueueIdError):
                call(queue_id)
        assert queue.queue_ids() == []

    # -- order ----------------------------------------------------------------------------------
    def test_fifo_within_a_priority(self, queue: SessionQueueBase) -> None:
        first = queue.enqueue_batch(QUEUE, contract_batch([1, 2])).item_ids
        second = queue.enqueue_batch(QUEUE, contract_batch([3])).item_ids
        taken = [queue.dequeue() for _ in range(3)]
        assert [i.item_id for i in taken if i is not None] == first + second
        assert queue.dequeue() is None

    def test_queue_order_is_priority_desc_then_item_id(self, queue: SessionQueueBase) -> None:
        low = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3], priority=0)).item_ids
        high = queue.enqueue_batch(QUEUE, contract_batch([4, 5], priority=5)).item_ids
        mid = queue.enqueue_batch(QUEUE, contract_batch([6], priority=2)).item_ids
        negative = queue.enqueue_batch(QUEUE, contract_batch([7], priority=-1)).item_ids
        expected = high + mid + low + negative
        assert [i.item_id for i in queue.list_items(QUEUE)] == expected
        dequeued = []
        while (item := queue.dequeue()) is not None:
            assert item.status == "in_progress" and item.started_at is not None
            dequeued.append(item.item_id)
        assert dequeued == expected

    def test_prepend_goes_before_everything_pending(self, queue: SessionQueueBase) -> None:
        queue.enqueue_batch(QUEUE, contract_batch([1], priority=3))
        queue.enqueue_batch(QUEUE, contract_batch([2], priority=0))
        front = queue.enqueue_batch(QUEUE, contract_batch([3, 4], priority=0), prepend=True)
        assert front.priority > 3
        first, second = queue.dequeue(), queue.dequeue()
        assert first is not None and second is not None
        assert [first.item_id, second.item_id] == front.item_ids
        again = queue.enqueue_batch(QUEUE, contract_batch([5]), prepend=True)
        nxt = queue.dequeue()
        assert nxt is not None and nxt.item_id == again.item_ids[0]

    def test_prepend_on_an_empty_queue_keeps_the_batch_priority(self, queue: SessionQueueBase) -> None:
        assert queue.enqueue_batch(QUEUE, contract_batch([1], priority=4), prepend=True).priority == 4

    def test_queues_are_separate(self, queue: SessionQueueBase) -> None:
        a = queue.enqueue_batch("a", contract_batch([1])).item_ids
        b = queue.enqueue_batch("b", contract_batch([2], priority=9)).item_ids
        assert [i.item_id for i in queue.list_items("a")] == a
        assert [i.item_id for i in queue.list_items("b")] == b
        assert queue.queue_ids() == ["a", "b"]
        first = queue.dequeue()
        assert first is not None and first.item_id == b[0]  # dequeue serves every queue, by priority

    # -- reorder (move_item) --------------------------------------------------------------------
    def _order(self, queue: SessionQueueBase, queue_id: str = QUEUE) -> list[int]:
        return [i.item_id for i in queue.list_items(queue_id, status="pending", limit=100_000)]

    def test_move_to_front_back_and_before(self, queue: SessionQueueBase) -> None:
        a, b, c, d = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3, 4])).item_ids
        assert queue.move_item(d, to="front").item_id == d
        assert self._order(queue) == [d, a, b, c]
        queue.move_item(a, to="back")
        assert self._order(queue) == [d, b, c, a]
        queue.move_item(a, before=b)
        assert self._order(queue) == [d, a, b, c]
        queue.move_item(c, before=d)
        assert self._order(queue) == [c, d, a, b]
        later = queue.enqueue_batch(QUEUE, contract_batch([5])).item_ids
        assert self._order(queue) == [c, d, a, b, *later]  # enqueued later still goes last
        queue.move_item(d, to="back")
        queue.move_item(a, to="back")
        newest = queue.enqueue_batch(QUEUE, contract_batch([6])).item_ids
        assert self._order(queue) == [c, b, *later, d, a, *newest]
        taken = []
        while (item := queue.dequeue()) is not None:
            taken.append(item.item_id)
        assert taken == [c, b, *later, d, a, *newest]  # the processor takes them in the new order

    def test_move_adopts_the_priority_of_where_it_lands(self, queue: SessionQueueBase) -> None:
        (high,) = queue.enqueue_batch(QUEUE, contract_batch([1], priority=5)).item_ids
        low1, low2 = queue.enqueue_batch(QUEUE, contract_batch([2, 3], priority=0)).item_ids
        (neg,) = queue.enqueue_batch(QUEUE, contract_batch([4], priority=-2)).item_ids
        assert queue.move_item(low2, to="front").priority == 5
        assert self._order(queue) == [low2, high, low1, neg]
        assert queue.move_item(high, to="back").priority == -2
        assert self._order(queue) == [low2, low1, neg, high]
        assert queue.move_item(neg, before=low1).priority == 0
        assert self._order(queue) == [low2, neg, low1, high]
        (top,) = queue.enqueue_batch(QUEUE, contract_batch([5], priority=9)).item_ids
        assert self._order(queue)[0] == top  # priority still comes first for new work

    def test_cursor_pages_follow_the_moved_order(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3, 4, 5])).item_ids
        queue.move_item(ids[4], before=ids[1])
        queue.move_item(ids[0], to="back")
        expected = [ids[4], ids[1], ids[2], ids[3], ids[0]]
        seen: list[int] = []
        cursor = None
        while page := queue.list_items(QUEUE, cursor=cursor, limit=2):
            seen += [i.item_id for i in page]
            cursor = page[-1].item_id
        assert seen == expected

    def test_moving_a_single_item_keeps_it_pending(self, queue: SessionQueueBase) -> None:
        (only,) = queue.enqueue_batch(QUEUE, contract_batch([1], priority=3)).item_ids
        for to in ("front", "back"):
            moved = queue.move_item(only, to=to)
            assert (moved.status, moved.priority) == ("pending", 3)

    def test_bad_moves_are_refused_and_change_nothing(self, queue: SessionQueueBase) -> None:
        a, b, c = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3])).item_ids
        (elsewhere,) = queue.enqueue_batch("other", contract_batch([4])).item_ids
        running = queue.dequeue()
        assert running is not None and running.item_id == a
        queue.cancel_items([c])
        before = _snapshot(queue)
        with pytest.raises(QueueItemNotFoundError, match="999999"):
            queue.move_item(999_999, to="front")
        with pytest.raises(QueueItemNotFoundError, match="999999"):
            queue.move_item(b, before=999_999)
        with pytest.raises(QueueItemNotPendingError, match=f"{a} is in_progress"):
            queue.move_item(a, to="back")
        with pytest.raises(QueueItemNotPendingError, match=f"{c} is canceled"):
            queue.move_item(c, to="front")
        with pytest.raises(QueueItemNotPendingError, match=f"{a} is in_progress"):
            queue.move_item(b, before=a)
        with pytest.raises(QueueError, match="queue 'other'"):
            queue.move_item(b, before=elsewhere)
        with pytest.raises(QueueError, match="itself"):
            queue.move_item(b, before=b)
        with pytest.raises(QueueError, match="exactly one"):
            queue.move_item(b)
        with pytest.raises(QueueError, match="exactly one"):
            queue.move_item(b, to="front", before=a)
        with pytest.raises(QueueError, match="'front' or 'back'"):
            queue.move_item(b, to="middle")  # type: ignore[arg-type]
        assert _snapshot(queue) == before

    def test_moved_order_survives_a_restart(self, queue: SessionQueueBase) -> None:
        if not self.persistent:
            skip_by_choice("this queue does not persist")
        a, b, c = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3])).item_ids
        queue.move_item(c, to="front")
        queue.move_item(a, to="back")
        again = self.reopen(queue)
        assert self._order(again) == [c, b, a]
        (new,) = again.enqueue_batch(QUEUE, contract_batch([4])).item_ids
        assert self._order(again) == [c, b, a, new]

    # -- the size cap ---------------------------------------------------------------------------
    def test_max_size(self, make_queue: Callable[[int], SessionQueueBase]) -> None:
        small = make_queue(3)
        small.enqueue_batch(QUEUE, contract_batch([1, 2]))
        before = _snapshot(small)
        with pytest.raises(QueueFullError, match="maximum of 3") as info:
            small.enqueue_batch(QUEUE, contract_batch([3, 4]))
        assert isinstance(info.value, BatchError)
        assert "max_queue_size" in str(info.value)
        assert _snapshot(small) == before
        small.enqueue_batch(QUEUE, contract_batch([5]))
        assert small.status(QUEUE).pending == 3
        small.dequeue()  # in progress items do not count against the limit
        small.enqueue_batch(QUEUE, contract_batch([6]))
        assert small.status(QUEUE).total == 4
        with pytest.raises(QueueFullError):
            small.enqueue_batch(QUEUE, contract_batch(runs=1_000_000))  # refused before expanding
        small.enqueue_batch("other", contract_batch([1, 2, 3]))  # the cap is per queue

    # -- cancel ---------------------------------------------------------------------------------
    def test_cancel_items(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3])).item_ids
        assert queue.cancel_items([ids[0]]) == [ids[0]]
        assert queue.get_item(ids[0]).status == "canceled"
        assert queue.get_item(ids[0]).completed_at is not None
        assert queue.cancel_items([ids[0]]) == []  # already finished
        queue.set_status(ids[1], "completed")
        assert queue.cancel_items([ids[1], ids[2]]) == [ids[2]]
        assert queue.get_item(ids[1]).status == "completed"

    def test_cancel_unknown_items_changes_nothing(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2])).item_ids
        before = _snapshot(queue)
        with pytest.raises(QueueItemNotFoundError, match="9999") as info:
            queue.cancel_items([ids[0], 9999])
        assert isinstance(info.value, KeyError) and info.value.item_ids == [9999]
        assert _snapshot(queue) == before
        with pytest.raises(QueueError):
            queue.cancel_items("1")  # type: ignore[arg-type]

    def test_cancel_batch(self, queue: SessionQueueBase) -> None:
        a = queue.enqueue_batch(QUEUE, contract_batch([1, 2], batch_id="a")).item_ids
        b = queue.enqueue_batch(QUEUE, contract_batch([3, 4], batch_id="b")).item_ids
        other = queue.enqueue_batch("other", contract_batch([5], batch_id="a")).item_ids
        assert sorted(queue.cancel_batch(QUEUE, ["a"])) == a
        assert [queue.get_item(i).status for i in a] == ["canceled", "canceled"]
        assert [queue.get_item(i).status for i in b] == ["pending", "pending"]
        assert queue.get_item(other[0]).status == "pending"  # another queue's batch of the same id
        assert queue.cancel_batch(QUEUE, ["a"]) == []  # known, nothing left to cancel
        before = _snapshot(queue)
        with pytest.raises(BatchNotFoundError, match="nope") as info:
            queue.cancel_batch(QUEUE, ["b", "nope", "a", "nope2"])
        assert info.value.batch_ids == ["nope", "nope2"]  # every unknown one, in the order given
        assert _snapshot(queue) == before

    def test_cancel_all_except_current_never_touches_the_in_progress_item(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3, 4])).item_ids
        current = queue.dequeue()
        assert current is not None and current.item_id == ids[0]
        queue.set_status(ids[1], "failed", error_type="ValueError", error_message="boom", error_traceback="tb")
        canceled = queue.cancel_all_except_current(QUEUE)
        assert sorted(canceled) == ids[2:]
        assert queue.get_item(ids[0]).status == "in_progress"
        assert queue.get_item(ids[1]).status == "failed"
        assert queue.status(QUEUE).model_dump() == {
            "queue_id": QUEUE,
            "paused": False,
            "pending": 0,
            "in_progress": 1,
            "completed": 0,
            "failed": 1,
            "canceled": 2,
            "total": 4,
        }

    def test_cancel_in_progress_item(self, queue: SessionQueueBase) -> None:
        (item_id,) = queue.enqueue_batch(QUEUE, contract_batch([1])).item_ids
        queue.dequeue()
        assert queue.cancel_items([item_id]) == [item_id]
        assert queue.get_item(item_id).status == "canceled"
        # the processor finishing later does not overwrite the cancel
        after = queue.set_status(item_id, "completed", expected="in_progress")
        assert after.status == "canceled"

    # -- retry, clear, prune --------------------------------------------------------------------
    def test_retry_failed_and_canceled(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3], batch_id="r", priority=2)).item_ids
        queue.set_status(ids[0], "failed", error_type="ValueError", error_message="boom", error_traceback="tb")
        queue.cancel_items([ids[1]])
        queue.set_status(ids[2], "completed")
        new_ids = queue.retry_items(ids)
        assert len(new_ids) == 2
        assert not set(new_ids) & set(ids)
        assert min(new_ids) > max(ids)
        for old_id, new_id in zip(ids[:2], new_ids, strict=True):
            old, new = queue.get_item(old_id), queue.get_item(new_id)
            assert new.status == "pending"
            assert (new.error_type, new.error_message, new.error_traceback) == (None, None, None)
            assert (new.started_at, new.completed_at) == (None, None)
            assert new.batch_id == "r" and new.priority == 2
            assert new.graph == old.graph and new.field_values == old.field_values
            assert new.session_id != old.session_id
        assert queue.get_item(ids[0]).status == "failed"  # the original stays as history
        assert queue.retry_items([ids[2]]) == []  # completed: nothing to retry
        assert queue.status(QUEUE).pending == 2
        before = _snapshot(queue)
        with pytest.raises(QueueItemNotFoundError):
            queue.retry_items([ids[0], 9999])
        assert _snapshot(queue) == before

    def test_clear_keeps_the_in_progress_item(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3])).item_ids
        queue.enqueue_batch("other", contract_batch([4]))
        queue.dequeue()
        queue.set_status(ids[1], "completed")
        assert queue.clear(QUEUE) == 2
        assert [i.item_id for i in queue.list_items(QUEUE)] == [ids[0]]
        assert queue.status("other").pending == 1
        assert queue.clear("never-used") == 0

    def test_prune_removes_only_finished_items(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3, 4, 5])).item_ids
        first = queue.dequeue()
        assert first is not None
        queue.set_status(ids[1], "completed")
        queue.set_status(ids[2], "failed", error_type="E", error_message="m", error_traceback="t")
        queue.cancel_items([ids[3]])
        assert queue.prune(QUEUE) == 3
        assert [i.item_id for i in queue.list_items(QUEUE)] == [ids[0], ids[4]]
        with pytest.raises(KeyError):
            queue.get_item(ids[1])

    def test_item_ids_are_never_reused(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2])).item_ids
        queue.clear(QUEUE)
        again = queue.enqueue_batch(QUEUE, contract_batch([3])).item_ids
        assert again[0] > max(ids)

    # -- listing --------------------------------------------------------------------------------
    def test_list_items_with_a_cursor(self, queue: SessionQueueBase) -> None:
        low = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3], priority=0)).item_ids
        high = queue.enqueue_batch(QUEUE, contract_batch([4, 5], priority=1)).item_ids
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
        with pytest.raises(QueueError, match="unknown queue item status"):
            queue.list_items(QUEUE, status="done")  # type: ignore[arg-type]

    def test_list_items_after_a_pruned_cursor(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3, 4])).item_ids
        queue.set_status(ids[1], "completed")
        assert queue.prune(QUEUE) == 1
        assert [i.item_id for i in queue.list_items(QUEUE, cursor=ids[1])] == [ids[2], ids[3]]

    def test_status_counts_per_queue(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3, 4, 5, 6])).item_ids
        queue.enqueue_batch("other", contract_batch([7, 8]))
        queue.dequeue()
        queue.set_status(ids[1], "completed")
        queue.set_status(ids[2], "failed", error_type="E", error_message="m", error_traceback="t")
        queue.cancel_items([ids[3]])
        counts = queue.status(QUEUE)
        assert (counts.pending, counts.in_progress, counts.completed, counts.failed, counts.canceled) == (2, 1, 1, 1, 1)
        assert counts.total == 6
        other = queue.status("other")
        assert (other.pending, other.total) == (2, 2)
        assert queue.status("empty").total == 0

    def test_set_status_records_errors(self, queue: SessionQueueBase) -> None:
        (item_id,) = queue.enqueue_batch(QUEUE, contract_batch([1])).item_ids
        item = queue.set_status(item_id, "failed", error_type="ValueError", error_message="bad", error_traceback="tb")
        assert (item.status, item.error_type, item.error_message, item.error_traceback) == (
            "failed",
            "ValueError",
            "bad",
            "tb",
        )
        assert item.completed_at is not None
        assert queue.get_item(item_id) == item
        with pytest.raises(KeyError):
            queue.get_item(12345)
        with pytest.raises(QueueItemNotFoundError):
            queue.set_status(12345, "completed")
        with pytest.raises(QueueError):
            queue.set_status(item_id, "finished")  # type: ignore[arg-type]
        unchanged = queue.set_status(item_id, "completed", expected="in_progress")
        assert unchanged.status == "failed"

    # -- pause ----------------------------------------------------------------------------------
    def test_pause_and_resume(self, queue: SessionQueueBase) -> None:
        a = queue.enqueue_batch("a", contract_batch([1], priority=5)).item_ids
        b = queue.enqueue_batch("b", contract_batch([2])).item_ids
        assert not queue.is_paused("a")
        queue.pause("a")
        assert queue.is_paused("a") and queue.status("a").paused and not queue.status("b").paused
        taken = queue.dequeue()
        assert taken is not None and taken.item_id == b[0]  # a is paused: its item waits
        assert queue.dequeue() is None
        assert queue.get_item(a[0]).status == "pending"
        queue.enqueue_batch("a", contract_batch([3]))  # a paused queue still accepts items
        queue.resume("a")
        assert not queue.is_paused("a")
        taken = queue.dequeue()
        assert taken is not None and taken.item_id == a[0]
        queue.pause("idle")
        assert "idle" in queue.queue_ids()

    # -- crash recovery -------------------------------------------------------------------------
    def test_recover_interrupted_fails_in_progress_items(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3])).item_ids
        running = queue.dequeue()
        assert running is not None
        recovered = queue.recover_interrupted(requeue=False)
        assert [i.item_id for i in recovered] == [ids[0]]
        item = queue.get_item(ids[0])
        assert item.status == "failed" and item.error_type == "ProcessTerminated"
        assert item.error_message is not None and "terminated" in item.error_message
        assert [queue.get_item(i).status for i in ids[1:]] == ["pending", "pending"]
        assert queue.recover_interrupted(requeue=False) == []

    def test_recover_interrupted_can_requeue(self, queue: SessionQueueBase) -> None:
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3])).item_ids
        first = queue.dequeue()
        assert first is not None
        recovered = queue.recover_interrupted(requeue=True)
        assert [i.item_id for i in recovered] == [ids[0]]
        item = queue.get_item(ids[0])
        assert (item.status, item.session_id, item.started_at) == ("pending", first.session_id, None)
        again = queue.dequeue()
        assert again is not None and again.item_id == ids[0]  # it keeps its place in the order
        renewed = queue.recover_interrupted(requeue=True, item_ids=[ids[0]], new_sessions=True)
        assert renewed[0].session_id != first.session_id and renewed[0].status == "pending"

    # -- events ---------------------------------------------------------------------------------
    def test_every_status_change_is_an_event(self, queue: SessionQueueBase) -> None:
        bus = InProcessEventBus()
        seen: list[EventBase] = []
        bus.subscribe(seen.append)
        queue.events = bus
        result = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3], batch_id="ev"))
        ids = result.item_ids
        taken = queue.dequeue()
        assert taken is not None
        queue.set_status(ids[0], "failed", error_type="E", error_message="m", error_traceback="t")
        queue.cancel_items([ids[1]])
        new = queue.retry_items([ids[0]])
        queue.cancel_all_except_current(QUEUE)
        names = [(e.event_name, getattr(e, "item_id", None), getattr(e, "status", None)) for e in seen]
        assert names == [
            ("batch_enqueued", None, None),
            ("queue_item_status_changed", ids[0], "in_progress"),
            ("queue_item_status_changed", ids[0], "failed"),
            ("queue_item_status_changed", ids[1], "canceled"),
            ("queue_item_status_changed", new[0], "pending"),
            ("queue_item_status_changed", ids[2], "canceled"),
            ("queue_item_status_changed", new[0], "canceled"),
        ]
        enqueued = seen[0]
        assert (enqueued.queue_id, enqueued.batch_id, enqueued.enqueued, enqueued.requested) == (  # type: ignore[attr-defined]
            QUEUE,
            "ev",
            3,
            3,
        )
        failed = seen[2]
        assert failed.session_id == taken.session_id and failed.error_type == "E"  # type: ignore[attr-defined]
        assert all(e.queue_id == QUEUE for e in seen)

    # -- concurrency ----------------------------------------------------------------------------
    def test_concurrent_enqueue_and_dequeue_never_hand_out_an_item_twice(
        self, make_queue: Callable[[int], SessionQueueBase]
    ) -> None:
        queue = make_queue(100_000)
        producers, batches, per_batch, consumers = 4, 10, 5, 4
        taken: list[list[int]] = [[] for _ in range(consumers)]
        enqueued: list[int] = []
        lock = threading.Lock()
        done_producing = threading.Event()
        errors: list[BaseException] = []

        def produce(p: int) -> None:
            try:
                for b in range(batches):
                    ids = queue.enqueue_batch(
                        f"q{p % 2}", contract_batch(list(range(per_batch)), priority=b % 3)
                    ).item_ids
                    with lock:
                        enqueued.extend(ids)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        def consume(c: int) -> None:
            try:
                while True:
                    item = queue.dequeue()
                    if item is None:
                        if done_producing.is_set():
                            item = queue.dequeue()
                            if item is None:
                                return
                        else:
                            continue
                    taken[c].append(item.item_id)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
        readers = [threading.Thread(target=consume, args=(c,)) for c in range(consumers)]
        for t in threads + readers:
            t.start()
        for t in threads:
            t.join(60)
        done_producing.set()
        for t in readers:
            t.join(60)
        assert not errors, errors
        all_taken = [i for t in taken for i in t]
        assert len(enqueued) == producers * batches * per_batch
        assert len(set(enqueued)) == len(enqueued)
        assert sorted(all_taken) == sorted(enqueued)  # every item taken, none twice
        for q in ("q0", "q1"):
            assert queue.status(q).in_progress == queue.status(q).total

    # -- persistence ----------------------------------------------------------------------------
    def test_the_queue_survives_a_restart(self, queue: SessionQueueBase) -> None:
        if not self.persistent:
            skip_by_choice("this queue does not persist")
        ids = queue.enqueue_batch(QUEUE, contract_batch([1, 2, 3], priority=1)).item_ids
        queue.enqueue_batch(QUEUE, contract_batch([4]), prepend=True)
        queue.dequeue()
        queue.set_status(ids[0], "failed", error_type="E", error_message="m", error_traceback="t")
        queue.pause(QUEUE)
        before = _snapshot(queue)
        again = self.reopen(queue)
        assert _snapshot(again) == before
        assert again.is_paused(QUEUE) and again.status(QUEUE).paused
        again.resume(QUEUE)
        nxt = again.dequeue()
        assert nxt is not None and nxt.item_id == ids[1]
        new = again.enqueue_batch(QUEUE, contract_batch([9])).item_ids
        assert new[0] > max(i["item_id"] for i in before)


# == workflows =======================================================================================
def contract_workflow(name: str = "adder", *, b: int = 100) -> dict[str, Any]:
    """A workflow of `contract_add` -> `contract_mul` exposing `start` (add.a), `step` (add.b) and
    `times` (mul.b); `mul.a` is fed by an edge."""
    return {
        "name": name,
        "description": "adds, then multiplies",
        "graph": {
            "nodes": {
                "add": {"id": "add", "type": "contract_add", "a": 1, "b": b},
                "mul": {"id": "mul", "type": "contract_mul", "b": 2},
            },
            "edges": [_edge("add", "value", "mul", "a")],
        },
        "inputs": [
            {"name": "start", "node_id": "add", "field": "a", "description": "The first number"},
            {"name": "step", "node_id": "add", "field": "b"},
            {"name": "times", "node_id": "mul", "field": "b"},
        ],
    }


class WorkflowStoreContract(_WithRegistry):
    """Subclass with a `store` fixture: a `WorkflowStorageBase` on fresh, empty storage checking
    workflows against `contract_registry`. Persistent stores set `persistent = True` and implement
    `reopen(store)`."""

    persistent = False

    @pytest.fixture
    def store(self) -> WorkflowStorageBase:  # pragma: no cover - provided by subclasses
        raise NotImplementedError

    def reopen(self, store: WorkflowStorageBase) -> WorkflowStorageBase:
        raise NotImplementedError

    def test_save_makes_versions_and_get_returns_latest_or_one(self, store: WorkflowStorageBase) -> None:
        first = store.save("wf1", contract_workflow(b=1))
        assert (first.id, first.version, first.name) == ("wf1", 1, "adder")
        assert [i.name for i in first.inputs] == ["start", "step", "times"]
        assert first.inputs[0].description == "The first number"
        second = store.save("wf1", contract_workflow("adder v2", b=2))
        assert second.version == 2
        assert store.get("wf1").version == 2 and store.get("wf1").graph["nodes"]["add"]["b"] == 2
        old = store.get("wf1", 1)
        assert old.graph["nodes"]["add"]["b"] == 1 and old.name == "adder"
        assert old == first
        assert [(v.version, v.name) for v in store.versions("wf1")] == [(1, "adder"), (2, "adder v2")]
        with pytest.raises(WorkflowNotFoundError, match="version 3 of workflow 'wf1'"):
            store.get("wf1", 3)

    def test_list_latest_versions_most_recently_saved_first(self, store: WorkflowStorageBase) -> None:
        store.save("a", contract_workflow("Alpha"))
        store.save("b", contract_workflow("Beta"))
        store.save("a", contract_workflow("Alpha 2"))
        page = store.list()
        assert [(w.id, w.version, w.versions, w.name) for w in page.items] == [
            ("a", 2, 2, "Alpha 2"),
            ("b", 1, 1, "Beta"),
        ]
        assert page.total == 2
        assert [w.id for w in store.list(query="BET").items] == ["b"]
        assert [w.id for w in store.list(offset=1, limit=1).items] == ["b"]
        assert store.list(query="zzz").total == 0
        assert store.resolve("Beta").id == "b" and store.resolve("a").version == 2

    def test_delete_removes_every_version(self, store: WorkflowStorageBase) -> None:
        store.save("gone", contract_workflow())
        store.save("gone", contract_workflow())
        store.save("kept", contract_workflow())
        assert store.delete("gone") == 2
        for call in (store.get, store.versions, store.delete, store.resolve):
            with pytest.raises(WorkflowNotFoundError, match="workflow 'gone' does not exist"):
                call("gone")
        assert [w.id for w in store.list().items] == ["kept"]
        assert store.save("gone", contract_workflow()).version == 1  # a new workflow

    @pytest.mark.parametrize(
        ("inputs", "needles"),
        [
            ([{"name": "x", "node_id": "nope", "field": "a"}], ("'x'", "no node 'nope'", "add, mul")),
            ([{"name": "x", "node_id": "add", "field": "c"}], ("'x'", "no input named 'c'", "a, b")),
            ([{"name": "x", "node_id": "mul", "field": "a"}], ("'x'", "fed by an edge")),
            (
                [{"name": "x", "node_id": "add", "field": "a"}, {"name": "x", "node_id": "add", "field": "b"}],
                ("'x'", "exposed twice"),
            ),
            (
                [{"name": "x", "node_id": "add", "field": "a"}, {"name": "y", "node_id": "add", "field": "a"}],
                ("'y'", "'x' already exposes"),
            ),
        ],
    )
    def test_bad_exposed_inputs_are_refused_naming_them(
        self, store: WorkflowStorageBase, inputs: list[dict[str, Any]], needles: tuple[str, ...]
    ) -> None:
        workflow = {**contract_workflow(), "inputs": inputs}
        with pytest.raises(WorkflowInputError) as info:
            store.save("bad", workflow)
        for needle in needles:
            assert needle in str(info.value), str(info.value)
        assert info.value.input_name in ("x", "y")
        assert store.list().total == 0

    @pytest.mark.parametrize(
        ("change", "error"),
        [
            ({"graph": {"nodes": {"n": {"id": "n", "type": "no_such_type"}}, "edges": []}}, BatchError),
            ({"inputs": [{"name": "bad name!", "node_id": "add", "field": "a"}]}, WorkflowError),
            ({"name": ""}, WorkflowError),
            ({"extra": 1}, WorkflowError),
        ],
    )
    def test_malformed_workflows_are_refused(
        self, store: WorkflowStorageBase, change: dict[str, Any], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            store.save("bad", {**contract_workflow(), **change})
        with pytest.raises(WorkflowError, match="invalid workflow id"):
            store.save("bad id/", contract_workflow())
        assert store.list().total == 0

    def test_unencodable_text_is_refused_or_round_trips(self, store: WorkflowStorageBase) -> None:
        for text in UNENCODABLE_TEXT:
            try:
                saved = store.save("t", contract_workflow(f"name {text}"))
            except InvalidTextError:
                continue
            assert store.get("t", saved.version).name == f"name {text}"

    def test_workflows_survive_a_restart(self, store: WorkflowStorageBase) -> None:
        if not self.persistent:
            skip_by_choice("this store does not persist")
        store.save("wf", contract_workflow(b=1))
        store.save("wf", contract_workflow(b=2))
        again = self.reopen(store)
        assert again.get("wf").version == 2 and again.get("wf", 1).graph["nodes"]["add"]["b"] == 1
        assert again.save("wf", contract_workflow()).version == 3

"""Services: the service contracts against the memory stores and the local file store, the image
service, objects, the output cache, and service selection.

The contract classes live in `invokeai_core.testing.contracts` (the SQLite stores run them in
`test_sqlite_stores.py`; other backends subclass them too).
"""

from __future__ import annotations

import io
import json
import sys
import textwrap
from collections.abc import Callable
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
from invokeai_core.errors import BatchError, ServiceUnavailableError
from invokeai_core.graph import Graph
from invokeai_core.registry import NodeRegistry
from invokeai_core.services.base import (
    ImageFileStorageBase,
    ImageRecord,
    ImageRecordStorageBase,
    ObjectStorageBase,
    QueueError,
    SessionQueueBase,
    SessionStorageBase,
    WorkflowStorageBase,
)
from invokeai_core.services.container import Services
from invokeai_core.services.image_service import ImageService
from invokeai_core.services.images_local import LocalImageFileStorage
from invokeai_core.services.memory import (
    MemoryImageRecordStorage,
    MemoryOutputCache,
    MemorySessionQueue,
    MemorySessionStorage,
    MemoryWorkflowStorage,
)
from invokeai_core.services.objects_memory import MemoryObjectStorage
from invokeai_core.session import Session
from invokeai_core.testing.contracts import (
    ImageFileStoreContract,
    ImageRecordStoreContract,
    SessionQueueContract,
    SessionStoreContract,
    WorkflowStoreContract,
    checker_image,
    contract_batch,
    image_pixels,
)


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


_pixels = image_pixels
_checker = checker_image


# == image file store contract (invokeai_core.testing.contracts) ========================================
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
class TestMemorySessionStorage(SessionStoreContract):
    @pytest.fixture
    def store(self, contract_registry: NodeRegistry) -> SessionStorageBase:
        return MemorySessionStorage()

    def test_get_returns_the_live_object(self, store: SessionStorageBase, contract_registry: NodeRegistry):
        session = Session(Graph(contract_registry))
        store.save(session)
        assert store.get(session.id) is session


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
        services = Services(config, invokeai_host.service_registry, invokeai_host.registry)
        with Invoker(services, invokeai_host) as invoker:
            for _ in range(2):
                assert invoker.run_graph(graph, timeout=30).status == "completed"
        assert calls == expected_calls


# == queue ===================================================================================================
QUEUE = "default"


class TestMemorySessionQueue(SessionQueueContract):
    @pytest.fixture
    def make_queue(self, contract_registry: NodeRegistry) -> Callable[[int], SessionQueueBase]:
        return lambda max_size: MemorySessionQueue(max_size=max_size, registry=contract_registry)

    def test_max_size_from_config(self, tmp_path: Path, contract_registry: NodeRegistry):
        config = load_config(root=tmp_path, overrides={"max_queue_size": 2}, environ={})
        q = MemorySessionQueue(config, registry=contract_registry)
        with pytest.raises(BatchError):
            q.enqueue_batch(QUEUE, contract_batch([1, 2, 3]))

    def test_pause_state_is_lost_with_the_process(self, contract_registry: NodeRegistry):
        q = MemorySessionQueue(registry=contract_registry)
        q.pause(QUEUE)
        assert not MemorySessionQueue(registry=contract_registry).is_paused(QUEUE)

    def test_one_processor_per_queue(self, contract_registry: NodeRegistry):
        q = MemorySessionQueue(registry=contract_registry)
        release = q.claim_processor()
        with pytest.raises(QueueError, match="already running"):
            q.claim_processor()
        release()
        q.claim_processor()()


def _batch(values: list[int] | None = None) -> Batch:
    data = [[BatchDatum(node_path="n", field_name="a", items=list(values))]] if values else []
    return Batch(graph={"nodes": {"n": {"id": "n", "type": "s_svc_add", "a": 0, "b": 100}}, "edges": []}, data=data)


def test_queue_uses_the_invokers_registry(invokeai_register_nodes, invokeai_invoker):
    invokeai_register_nodes(SvcAdd)
    q = invokeai_invoker.services.queue
    result = q.enqueue_batch(QUEUE, _batch([1, 2]))
    assert result.enqueued == 2


# == service selection =====================================================================================
def test_unknown_implementation_name(invokeai_host, tmp_path: Path):
    config = load_config(root=tmp_path, overrides={"services.images": "nope"}, environ={})
    services = Services(config, invokeai_host.service_registry, invokeai_host.registry)
    with pytest.raises(ServiceUnavailableError) as info:
        services.build_all()
    message = str(info.value)
    assert "'nope'" in message
    assert "images" in message
    assert "available: local" in message


def test_known_external_implementation_names_its_distribution(tmp_path: Path):
    from invokeai_core.plugins.host import PluginHost

    config = load_config(root=tmp_path, overrides={"services.images": "s3"}, environ={})
    host = PluginHost(config, allowlist=set()).load()  # as if invokeai-s3 were not installed
    with pytest.raises(ServiceUnavailableError, match="pip install invokeai-s3"):
        Services(config, host.service_registry, host.registry).get("images")


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
        Services(config, invokeai_host.service_registry, invokeai_host.registry).build_all()
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

    services = Services(load_config(root=root, environ={}), invokeai_host.service_registry, invokeai_host.registry)
    services.build_all()
    services.get(ImageFileStorageBase)
    assert module not in sys.modules
    assert type(services.images).__name__ == "LocalImageFileStorage"

    selected = Services(
        load_config(root=root, overrides={"services.images": "s_lazy"}, environ={}),
        invokeai_host.service_registry,
        invokeai_host.registry,
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
        Services(config, invokeai_host.service_registry, invokeai_host.registry).get("images")


def test_services_get_by_kind_and_by_abc(invokeai_host, tmp_path: Path):
    services = Services(load_config(root=tmp_path, environ={}), invokeai_host.service_registry, invokeai_host.registry)
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
        invokeai_host.registry,
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


def test_the_pytest_plugin_stays_import_light():
    """`invokeai_core.testing` is loaded into every pytest run (pytest11): no pydantic, no engine, no
    contracts (they import PIL and the engine, and only the tests that use them import them)."""
    import subprocess

    code = (
        "import sys, invokeai_core.testing; "
        "print(sorted(m for m in ('pydantic', 'PIL', 'invokeai_core.graph', 'invokeai_core.testing.contracts', "
        "'sqlite3') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


class TestMemoryWorkflowStorage(WorkflowStoreContract):
    @pytest.fixture
    def store(self, contract_registry: NodeRegistry) -> WorkflowStorageBase:
        return MemoryWorkflowStorage(registry=contract_registry)

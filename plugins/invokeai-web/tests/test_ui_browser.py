"""The web UI in real Chromium (Debian's, driven by Playwright) against a real `invokeai serve`.

One server for the module: a temporary root with the demo model (`invokeai models create-demo`),
`invokeai serve` on a free 127.0.0.1 port. Every test fails on a console error or an uncaught page
error. Screenshots of each screen go to tests/artifacts/ (gitignored).

Skipped, with the reason, when the UI is not built (scripts/setup.sh builds it), when
/usr/bin/chromium or the Python `playwright` package is missing; under CI=true or
INVOKEAI_REQUIRE_ALL_TESTS=1 each of those fails the run instead (`invokeai_core.testing`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("INVOKEAI_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

invokeai_web = pytest.importorskip(
    "invokeai_web", reason="invokeai-web is not installed (pip install -e plugins/invokeai-web)"
)
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the Python playwright package is not installed (scripts/setup.sh installs it)",
)
STATIC = Path(invokeai_web.__file__).parent / "static" / "index.html"
if not STATIC.is_file():
    pytest.skip(
        "the web UI is not built (scripts/setup.sh builds it; needs npm)",
        allow_module_level=True,
    )
if not Path(CHROMIUM).exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)

pytestmark = pytest.mark.timeout(300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _invokeai() -> list[str]:
    exe = Path(sys.executable).with_name("invokeai")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "invokeai_core.cli.main"]


@contextlib.contextmanager
def _serve(root: Path, env: dict[str, str], ready_path: str) -> Iterator[str]:
    """`invokeai serve` on a free 127.0.0.1 port, until `ready_path` answers; stopped on exit."""
    port = _free_port()
    log = (root / "serve.log").open("w")
    proc = subprocess.Popen(
        [*_invokeai(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + ready_path, timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("invokeai serve did not start:\n" + (root / "serve.log").read_text()) from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _server_env(root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1", **extra)
    return env


@pytest.fixture(scope="module")
def ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("ui-root")
    env = _server_env(root)
    made = subprocess.run([*_invokeai(), "models", "create-demo"], env=env, capture_output=True, text=True, timeout=180)
    assert made.returncode == 0, made.stderr
    with _serve(root, env, "/api/v1/app/version") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@contextlib.contextmanager
def _page_on(browser: Any, url: str, width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A fresh page on the UI at `url`, once it is live; fails on any console or page error."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.set_default_timeout(30_000)
    pg.console_problems = problems  # a test that provokes errors on purpose clears them
    pg.goto(url + "/")
    pg.get_by_test_id("connection").filter(has_text="live").wait_for()
    yield pg
    context.close()
    assert not problems, "errors in the browser console:\n" + "\n".join(problems)


@pytest.fixture
def page(browser: Any, ui_url: str) -> Iterator[Any]:
    with _page_on(browser, ui_url) as pg:
        yield pg


def shot(pg: Any, name: str) -> None:
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def record_progress(pg: Any) -> None:
    pg.evaluate(
        """() => { window.__progress = []; const el = document.querySelector('[data-testid=progress]');
        new MutationObserver(() => window.__progress.push(Number(el.getAttribute('aria-valuenow'))))
          .observe(el, {attributes: true}); }"""
    )


def test_generate_shows_progress_and_the_image_lands_in_the_gallery(page: Any) -> None:
    pg = page
    expect = sync_api.expect
    expect(pg.get_by_test_id("model")).to_have_value("demo-sd")
    pg.get_by_test_id("prompt").fill("a red fox in the snow")
    pg.get_by_test_id("steps").fill("16")
    pg.get_by_test_id("width").fill("256")
    pg.get_by_test_id("height").fill("256")
    record_progress(pg)
    pg.get_by_test_id("invoke").click()
    pg.get_by_test_id("preview").wait_for(timeout=60_000)  # a live step preview
    shot(pg, "generate-progress")
    pg.get_by_test_id("result").wait_for(timeout=120_000)
    expect(pg.get_by_test_id("progress-text")).to_contain_text("1/1 done")
    seen = pg.evaluate("window.__progress")
    moving = sorted({v for v in seen if 0 < v < 100})
    assert len(moving) >= 3, f"the progress bar did not move step by step: {seen}"
    assert seen[-1] == 100
    shot(pg, "generate")

    pg.get_by_role("tab", name="Gallery").click()
    items = pg.get_by_test_id("gallery-item")
    expect(items).to_have_count(1)
    items.first.click()
    meta = pg.get_by_test_id("metadata")
    expect(meta).to_contain_text("a red fox in the snow")
    expect(meta).to_contain_text("demo-sd")
    expect(meta).to_contain_text("seed")
    shot(pg, "gallery-viewer")
    pg.get_by_test_id("star").click()
    expect(pg.get_by_test_id("star")).to_have_attribute("aria-pressed", "true")
    pg.keyboard.press("Escape")
    expect(pg.get_by_test_id("viewer")).to_have_count(0)
    shot(pg, "gallery")

    # intermediates stay hidden unless asked for
    pg.get_by_test_id("show-intermediates").check()
    expect(pg.get_by_test_id("gallery-count")).not_to_have_text("0 images")


def test_a_canceled_generation_says_so_plainly(page: Any, ui_url: str) -> None:
    """After Cancel the screen shows the canceled state, not the earlier image as if it were the result."""
    pg = page
    expect = sync_api.expect
    for name, value in (("steps", "2"), ("width", "64"), ("height", "64")):
        pg.get_by_test_id(name).fill(value)
    pg.get_by_test_id("invoke").click()
    expect(pg.get_by_test_id("progress-text")).to_have_text("Completed · 1/1 done", timeout=120_000)
    expect(pg.get_by_test_id("result")).to_be_visible()
    pg.get_by_test_id("steps").fill("1000")
    pg.get_by_test_id("invoke").click()
    pg.get_by_test_id("preview").wait_for(timeout=60_000)  # running
    expect(pg.get_by_test_id("progress-text")).to_contain_text("0/1 done · step ")
    pg.get_by_test_id("cancel").click()
    expect(pg.get_by_test_id("progress-text")).to_have_text("Canceled · 0/1 done · 1 canceled", timeout=60_000)
    progress = pg.get_by_test_id("progress")
    expect(progress).to_have_attribute("data-state", "canceled")
    expect(progress).to_have_attribute("aria-valuenow", "0")
    note = pg.get_by_test_id("run-note")
    expect(note).to_have_text("Canceled: this run made no image. Earlier results are below.")
    expect(pg.get_by_test_id("result")).to_have_count(0)  # the earlier image is not shown as this run's
    expect(pg.locator(".strip img")).to_have_count(1)
    expect(pg.get_by_test_id("cancel")).to_be_disabled()
    shot(pg, "generate-canceled")
    assert pg.request.put(ui_url + "/api/v1/queue/default/prune").ok  # the queue test starts from no history


def test_queue_and_plugins_screens(page: Any) -> None:
    pg = page
    expect = sync_api.expect
    pg.get_by_role("tab", name="Queue").click()
    pg.get_by_test_id("pause").click()
    expect(pg.get_by_test_id("queue-status")).to_have_text("paused")
    # a paused queue keeps the item pending; cancel it, retry it, then resume and let it finish
    pg.get_by_role("tab", name="Generate").click()
    pg.get_by_test_id("steps").fill("2")
    pg.get_by_test_id("invoke").click()
    pg.get_by_role("tab", name="Queue").click()
    pending = pg.locator("tr[data-status=pending]")
    expect(pending).to_have_count(1)
    pending.get_by_role("button", name="Cancel").click()
    canceled = pg.locator("tr[data-status=canceled]")
    expect(canceled).to_have_count(1)
    canceled.get_by_role("button", name="Retry").click()
    expect(pg.locator("tr[data-status=pending]")).to_have_count(1)
    pg.get_by_test_id("resume").click()
    expect(pg.get_by_test_id("queue-status")).to_have_text("running")
    expect(pg.locator("tr[data-status=pending]")).to_have_count(0, timeout=90_000)
    expect(pg.locator("tr[data-status=in_progress]")).to_have_count(0, timeout=90_000)
    expect(pg.locator("tr[data-status=completed]").first).to_be_visible()
    shot(pg, "queue")

    pg.get_by_role("tab", name="Plugins & models").click()
    expect(pg.get_by_test_id("plugins-table")).to_contain_text("diffusers")
    expect(pg.get_by_test_id("models-table")).to_contain_text("demo-sd")
    shot(pg, "plugins-models")


def test_narrow_window_and_keyboard(page: Any) -> None:
    pg = page
    pg.reload()  # a second visit works from the cached assets (bench/ui_load.py measures how fast)
    pg.get_by_role("tab", name="Generate").wait_for()
    pg.get_by_test_id("connection").filter(has_text="live").wait_for()
    pg.set_viewport_size({"width": 420, "height": 800})
    pg.get_by_role("tab", name="Generate").focus()
    pg.keyboard.press("ArrowRight")
    sync_api.expect(pg.get_by_role("tab", name="Gallery")).to_have_attribute("aria-selected", "true")
    width = pg.evaluate("document.documentElement.scrollWidth")
    assert width <= 420, f"the page scrolls sideways at 420 px ({width} px wide)"
    shot(pg, "narrow-gallery")


def _handle(pg: Any, node_id: str, kind: str, field: str) -> Any:
    return pg.locator(f'.react-flow__node[data-id="{node_id}"] .react-flow__handle.{kind}[data-handleid="{field}"]')


def _connect(pg: Any, src: str, out: str, dst: str, inp: str) -> None:
    a = _handle(pg, src, "source", out).bounding_box()
    b = _handle(pg, dst, "target", inp).bounding_box()
    pg.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    pg.mouse.down()
    pg.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=12)
    pg.mouse.up()


def test_workflow_editor_builds_connects_and_runs_a_graph(page: Any, tmp_path: Path) -> None:
    pg = page
    expect = sync_api.expect
    pg.get_by_role("tab", name="Workflow").click()
    canvas = pg.get_by_test_id("canvas")
    canvas.wait_for()
    pg.get_by_test_id("palette-search").fill("image")
    for i, node_type in enumerate(["blank_image", "img_blur", "save_image"]):
        pg.get_by_test_id(f"palette-{node_type}").drag_to(canvas, target_position={"x": 60 + i * 300, "y": 60})
        expect(pg.get_by_test_id(f"node-{node_type}_1")).to_be_visible()
    blank = pg.get_by_test_id("node-blank_image_1")
    blank.get_by_label("Width", exact=True).fill("64")
    blank.get_by_label("Height", exact=True).fill("48")
    blank.get_by_label("Height", exact=True).press("Enter")
    pg.get_by_test_id("node-img_blur_1").get_by_label("Radius", exact=True).fill("2")
    pg.get_by_test_id("node-img_blur_1").get_by_label("Radius", exact=True).press("Enter")

    # an incompatible connection is refused: int (width) into ImageField
    _connect(pg, "blank_image_1", "width", "img_blur_1", "image")
    expect(pg.locator(".note.error")).to_contain_text("Connection refused")
    expect(pg.locator(".react-flow__edge")).to_have_count(0)
    shot(pg, "workflow-refused")

    _connect(pg, "blank_image_1", "image", "img_blur_1", "image")
    expect(pg.locator(".react-flow__edge")).to_have_count(1)
    _connect(pg, "img_blur_1", "image", "save_image_1", "image")
    expect(pg.locator(".react-flow__edge")).to_have_count(2)
    expect(pg.get_by_test_id("graph-size")).to_contain_text("3 nodes · 2 edges")

    pg.get_by_test_id("run-workflow").click()
    for node_id in ("blank_image_1", "img_blur_1", "save_image_1"):
        expect(pg.get_by_test_id(f"node-{node_id}")).to_have_attribute("data-status", "done", timeout=60_000)
    result = pg.get_by_test_id("node-save_image_1").get_by_test_id("node-result-image")
    expect(result).to_be_visible()
    expect(result).to_have_js_property("complete", True)
    assert result.evaluate("img => img.naturalWidth") > 0
    shot(pg, "workflow")

    # save, clear, open again
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Save…").click()
    saved = tmp_path / "workflow.json"
    dl.value.save_as(saved)
    data = json.loads(saved.read_text())
    assert set(data["nodes"]) == {"blank_image_1", "img_blur_1", "save_image_1"}
    assert data["nodes"]["blank_image_1"]["width"] == 64
    # a graph file that says what it needs, and validates against the published schema
    assert data["schema_version"] == 2 and set(data["ui"]["positions"]) == set(data["nodes"])
    assert {v["distribution"] for v in data["node_versions"].values()} == {"invokeai-nodes"}
    assert all(v["version"] and v["distribution_version"] for v in data["node_versions"].values())
    import jsonschema

    jsonschema.validate(data, pg.evaluate("fetch('/api/v1/graphs/schema').then((r) => r.json())"))
    pg.get_by_role("button", name="Clear").click()
    expect(pg.get_by_test_id("graph-size")).to_contain_text("0 nodes")
    pg.get_by_test_id("open-workflow").set_input_files(str(saved))
    expect(pg.get_by_test_id("graph-size")).to_contain_text("3 nodes · 2 edges")

    # a file needing a pack that is not installed: one line naming the distribution, nothing loaded
    needs = json.loads(saved.read_text())
    needs["nodes"]["img_blur_1"]["type"] = "sunset_blur"
    needs["node_versions"]["img_blur_1"] = {
        "version": "1.0.0",
        "distribution": "invokeai-sunset",
        "distribution_version": "0.3.0",
    }
    (tmp_path / "needs.json").write_text(json.dumps(needs))
    pg.get_by_test_id("open-workflow").set_input_files(str(tmp_path / "needs.json"))
    note = pg.locator(".note.error").filter(has_text="needs.json")
    expect(note).to_contain_text("needs the distribution invokeai-sunset 0.3.0")
    expect(note).to_contain_text("invokeai plugins install 'invokeai-sunset>=0.3.0'")
    assert "\n" not in note.inner_text().strip().removesuffix("\u00d7").strip()  # one line (and the dismiss button)
    expect(pg.get_by_test_id("graph-size")).to_contain_text("3 nodes · 2 edges")  # the editor kept its graph
    shot(pg, "workflow-missing-pack")
    pg.console_problems.clear()  # the 422 answer is logged by the browser, on purpose

    # the saved image is in the gallery, and its workflow loads back into the editor
    pg.get_by_role("tab", name="Gallery").click()
    pg.get_by_test_id("gallery-item").first.click()
    pg.get_by_test_id("load-workflow").click()
    expect(pg.get_by_test_id("graph-size")).to_contain_text("3 nodes · 2 edges")


def test_workflow_editor_preselects_the_only_model_and_labels_choices(page: Any) -> None:
    pg = page
    expect = sync_api.expect
    pg.get_by_role("tab", name="Workflow").click()
    canvas = pg.get_by_test_id("canvas")
    canvas.wait_for()
    pg.get_by_test_id("palette-search").fill("txt2img")
    pg.get_by_test_id("palette-txt2img").drag_to(canvas, target_position={"x": 80, "y": 60})
    node = pg.get_by_test_id("node-txt2img_1")
    expect(node.get_by_label("Model", exact=True)).to_have_value("demo-sd")  # the only model installed
    scheduler = node.locator(".inv-field", has=pg.get_by_label("Scheduler", exact=True))
    expect(scheduler.locator(".inv-type")).to_have_text("choice")
    expect(node.locator(".inv-type", has_text="Literal[")).to_have_count(0)
    shot(pg, "workflow-txt2img")


def test_failed_requests_and_an_unreachable_server_are_explained(page: Any) -> None:
    pg = page
    expect = sync_api.expect
    pg.route("**/api/v1/images?**", lambda route: route.fulfill(status=500, json={"detail": "disk on fire"}))
    pg.get_by_role("tab", name="Gallery").click()
    expect(pg.get_by_role("alert").filter(has_text="disk on fire")).to_contain_text("failed (500)")
    pg.route("**/api/v1/queue/**", lambda route: route.abort())
    pg.get_by_role("tab", name="Queue").click()
    expect(pg.get_by_role("alert").filter(has_text="unreachable")).to_be_visible()
    shot(pg, "request-errors")
    pg.console_problems.clear()  # the browser logs the failed loads provoked above


TOKEN = "ui-test-token"


@pytest.fixture(scope="module")
def token_ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second server that needs an access token (no models: this is about signing in)."""
    root = tmp_path_factory.mktemp("ui-token-root")
    with _serve(root, _server_env(root, INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN=TOKEN), "/api/v1/auth") as url:
        yield url


def test_a_server_with_an_access_token_asks_for_it_once(browser: Any, token_ui_url: str) -> None:
    import io
    import json

    from PIL import Image

    # an image uploaded by a program (bearer header), to show in the signed-in browser's gallery
    png = io.BytesIO()
    Image.new("RGB", (24, 16), (200, 30, 30)).save(png, format="PNG")
    boundary = "invokeai-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="red.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png.getvalue()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    upload = urllib.request.Request(
        token_ui_url + "/api/v1/images/upload",
        data=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(upload, timeout=10) as r:
        assert json.loads(r.read())["width"] == 24

    expect = sync_api.expect
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.set_default_timeout(30_000)
    try:
        pg.goto(token_ui_url + "/")
        form = pg.get_by_role("form", name="Sign in")
        expect(form).to_be_visible()
        pg.get_by_test_id("token").fill("not-the-token")
        pg.get_by_role("button", name="Sign in").click()
        expect(pg.get_by_role("alert")).to_contain_text("not this server's access token")
        shot(pg, "sign-in")
        pg.get_by_test_id("token").fill(TOKEN)
        pg.get_by_role("button", name="Sign in").click()
        expect(pg.get_by_test_id("connection")).to_have_text("● live")  # Socket.IO signed in by the cookie
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["invokeai_session"]["httpOnly"] and cookies["invokeai_session"]["value"] != TOKEN
        pg.get_by_role("tab", name="Gallery").click()
        thumb = pg.get_by_test_id("gallery-item").locator("img")
        expect(thumb).to_have_count(1)
        # <img> requests carry the cookie too: the thumbnail really loaded
        pg.wait_for_function("el => el.complete && el.naturalWidth > 0", arg=thumb.element_handle())
        pg.get_by_role("tab", name="Plugins & models").click()
        expect(pg.get_by_test_id("plugins-table")).to_contain_text("web")
        pg.reload()  # the cookie outlives the page
        expect(pg.get_by_test_id("connection")).to_have_text("● live")
        pg.get_by_test_id("sign-out").click()
        expect(pg.get_by_role("form", name="Sign in")).to_be_visible()
        pg.reload()
        expect(pg.get_by_role("form", name="Sign in")).to_be_visible()
    finally:
        context.close()
    # the only errors are the browser's own log lines for the refused token (401)
    assert all("401" in p for p in problems), problems


def test_nodes_connect_and_disconnect_from_the_keyboard(page: Any) -> None:
    """No mouse: add nodes from the palette with Enter, connect through each input's connect list."""
    pg = page
    expect = sync_api.expect
    pg.get_by_role("tab", name="Workflow").click()
    pg.get_by_test_id("canvas").wait_for()
    pg.get_by_test_id("palette-search").fill("image")
    for node_type in ("blank_image", "img_blur"):
        pg.get_by_test_id(f"palette-{node_type}").focus()
        pg.keyboard.press("Enter")
        expect(pg.get_by_test_id(f"node-{node_type}_1")).to_be_visible()
    connect = pg.get_by_role("button", name="Connect Image of img_blur_1")
    connect.focus()
    pg.keyboard.press("Enter")
    chooser = pg.get_by_role("combobox", name="Output to connect to Image of img_blur_1")
    expect(chooser).to_be_focused()
    # only outputs that fit an image input are offered: blank_image's image, not its width or height
    labels = chooser.locator("option:not([disabled])").all_inner_texts()
    assert labels == ["blank_image_1 · image (ImageField)"], labels
    chooser.select_option(index=1)
    expect(pg.locator(".react-flow__edge")).to_have_count(1)
    expect(pg.get_by_test_id("graph-size")).to_contain_text("2 nodes · 1 edges")
    shot(pg, "workflow-keyboard")
    pg.get_by_role("button", name="Disconnect Image of img_blur_1").press("Enter")
    expect(pg.locator(".react-flow__edge")).to_have_count(0)


def test_models_are_added_and_removed_from_the_ui(page: Any, ui_url: str) -> None:
    import json

    pg = page
    expect = sync_api.expect
    with urllib.request.urlopen(ui_url + "/api/v1/models", timeout=10) as r:
        demo = next(m for m in json.loads(r.read()) if m["name"] == "demo-sd")
    pg.get_by_role("tab", name="Plugins & models").click()
    form = pg.get_by_role("form", name="Add a model")
    form.get_by_test_id("model-path").fill(demo["path"] + "-nowhere")
    form.get_by_role("button", name="Install").click()
    expect(form.get_by_role("alert")).to_contain_text("no such file")
    form.get_by_test_id("model-path").fill(demo["path"])
    form.get_by_test_id("model-name").fill("demo-copy")
    form.get_by_role("button", name="Install").click()
    table = pg.get_by_test_id("models-table")
    expect(table).to_contain_text("demo-copy")
    shot(pg, "models-added")
    pg.get_by_role("button", name="Remove demo-copy").click()
    expect(table).not_to_contain_text("demo-copy")
    expect(table).to_contain_text("demo-sd")
    pg.console_problems.clear()  # the browser logs the refused install (422) as a failed load


def test_the_api_docs_render_with_no_network(browser: Any, ui_url: str) -> None:
    """/docs (Swagger UI) and /redoc (ReDoc) load every asset from this server: a browser that may
    reach nothing else renders both."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    elsewhere: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(ui_url + "/"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_this_server)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.set_default_timeout(30_000)
    expect = sync_api.expect
    try:
        pg.goto(ui_url + "/docs")
        expect(pg.locator(".swagger-ui .info .title")).to_contain_text("invokeai-core")
        expect(pg.locator(".swagger-ui .opblock-tag", has_text="sessions")).to_be_visible()
        pg.locator(".swagger-ui .opblock-summary-path", has_text="/api/v1/app/version").first.wait_for()
        shot(pg, "api-docs")
        pg.goto(ui_url + "/redoc")
        expect(pg.locator("h1", has_text="invokeai-core")).to_be_visible()
        expect(pg.locator("[data-item-id]", has_text="Enqueue a batch").first).to_be_attached()
        shot(pg, "api-redoc")
    finally:
        context.close()
    assert elsewhere == [], f"the docs reached outside the server: {elsewhere}"
    assert not problems, "errors in the browser console:\n" + "\n".join(problems)


INT_BATCH = {
    "graph": {"nodes": {"n": {"id": "n", "type": "integer", "value": 0}}, "edges": []},
    "data": [[{"node_path": "n", "field_name": "value", "items": [1, 2, 3]}]],
}


def _pending_order(pg: Any) -> list[int]:
    ids = pg.locator("[data-testid=pending-order] li[data-item-id]").evaluate_all(
        "els => els.map(e => Number(e.dataset.itemId))"
    )
    return [int(i) for i in ids]


def test_pending_items_are_reordered_by_dragging(page: Any, ui_url: str) -> None:
    pg = page
    expect = sync_api.expect
    api = ui_url + "/api/v1/queue/default"
    assert pg.request.put(api + "/processor/pause").ok
    a, b, c = pg.request.post(api + "/enqueue_batch", data={"batch": INT_BATCH}).json()["item_ids"]
    try:
        pg.get_by_role("tab", name="Queue").click()
        rows = pg.locator("[data-testid=pending-order] li[data-item-id]")
        expect(rows).to_have_count(3)
        assert _pending_order(pg) == [a, b, c]
        # drag the last item onto the first: it goes just before it
        rows.filter(has_text=f"item {c}").drag_to(rows.filter(has_text=f"item {a}"))
        expect(rows.first).to_have_attribute("data-item-id", str(c))
        assert _pending_order(pg) == [c, a, b]
        # onto the end zone: it runs last
        rows.filter(has_text=f"item {c}").drag_to(pg.get_by_test_id("pending-end"))
        expect(rows.last).to_have_attribute("data-item-id", str(c))
        assert _pending_order(pg) == [a, b, c]
        # the keyboard way
        pg.get_by_role("button", name=f"Move item {b} to the front").click()
        expect(rows.first).to_have_attribute("data-item-id", str(b))
        shot(pg, "queue-reorder")
        listed = pg.request.get(api + "/list?status=pending").json()["items"]
        assert [i["item_id"] for i in listed] == [b, a, c]  # the server's order, not only the screen's
    finally:
        pg.request.put(api + "/cancel_all_except_current")
        pg.request.put(api + "/processor/resume")
        pg.request.put(api + "/prune")


def test_the_workflow_library_saves_opens_and_runs_with_inputs(page: Any, ui_url: str, tmp_path: Path) -> None:
    pg = page
    expect = sync_api.expect
    graph = {
        "nodes": {
            "x": {"id": "x", "type": "integer", "value": 2},
            "y": {"id": "y", "type": "integer", "value": 3},
        },
        "edges": [],
    }
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"graph": graph}))
    pg.get_by_role("tab", name="Workflow").click()
    pg.get_by_test_id("canvas").wait_for()
    pg.get_by_test_id("open-workflow").set_input_files(str(path))
    expect(pg.get_by_test_id("graph-size")).to_contain_text("2 nodes")
    pg.get_by_test_id("toggle-library").click()
    lib = pg.get_by_test_id("library")
    pg.get_by_test_id("wf-id").fill("two-ints")
    pg.get_by_test_id("wf-name").fill("Two integers")
    # an exposed input naming no real field is refused, naming it
    pg.get_by_test_id("wf-inputs").fill("first = x.nope")
    pg.get_by_test_id("wf-save").click()
    expect(pg.get_by_test_id("wf-error")).to_contain_text("workflow input 'first'")
    pg.console_problems.clear()  # the refused request is logged by the browser
    pg.get_by_test_id("wf-inputs").fill("first = x.value  # the first number\nsecond = y.value")
    pg.get_by_test_id("wf-save").click()
    item = lib.locator("li[data-workflow-id=two-ints]")
    expect(item).to_contain_text("v1 · 2 input(s)")
    pg.get_by_test_id("wf-save").click()
    expect(item).to_contain_text("v2 · 2 input(s)")
    # run it with inputs: a bad value names the input, a good one enqueues
    assert pg.request.put(ui_url + "/api/v1/queue/default/processor/pause").ok
    try:
        item.get_by_role("button", name="Run two-ints").click()
        pg.get_by_test_id("wf-input-first").fill("many")
        pg.get_by_test_id("wf-enqueue").click()
        expect(pg.get_by_test_id("wf-error")).to_contain_text("inputs.first")
        pg.console_problems.clear()
        pg.get_by_test_id("wf-input-first").fill("40")
        pg.get_by_test_id("wf-runs").fill("2")
        pg.get_by_test_id("wf-enqueue").click()
        expect(pg.get_by_test_id("wf-error")).to_have_count(0)
        pending = pg.request.get(ui_url + "/api/v1/queue/default/list?status=pending").json()["items"]
        assert len(pending) == 2
        assert all(i["field_values"] == [{"node_path": "x", "field_name": "value", "value": 40}] for i in pending)
        shot(pg, "workflow-library")
    finally:
        pg.request.put(ui_url + "/api/v1/queue/default/cancel_all_except_current")
        pg.request.put(ui_url + "/api/v1/queue/default/processor/resume")
        pg.request.put(ui_url + "/api/v1/queue/default/prune")
    # open it back into an empty editor
    pg.get_by_role("button", name="Clear").click()
    expect(pg.get_by_test_id("graph-size")).to_contain_text("0 nodes")
    item.get_by_role("button", name="Open two-ints").click()
    expect(pg.get_by_test_id("graph-size")).to_contain_text("2 nodes")
    assert pg.request.delete(ui_url + "/api/v1/workflows/two-ints").ok


# -- LoRAs and ControlNets ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def guided_ui_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose root holds the demo model plus a tiny random LoRA and ControlNet for it
    (built offline by guidance_models.py, installed with `invokeai models add`)."""
    root = tmp_path_factory.mktemp("ui-guided-root")
    env = _server_env(root)

    def cli(*args: str) -> str:
        done = subprocess.run([*_invokeai(), *args], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"invokeai {' '.join(args)}: {done.stderr}"
        return done.stdout

    cli("models", "create-demo")
    (demo,) = json.loads(cli("models", "list", "--json"))
    extras = root / "extras"
    built = subprocess.run(
        [sys.executable, str(HERE / "guidance_models.py"), demo["path"], str(extras)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    cli("models", "add", str(extras / "demo-lora.safetensors"), "--name", "demo-lora")
    cli("models", "add", str(extras / "demo-controlnet"), "--name", "demo-controlnet")
    kinds = {m["name"]: (m["type"], m["base"]) for m in json.loads(cli("models", "list", "--json"))}
    assert kinds == {
        "demo-sd": ("main", "sd-1"),
        "demo-lora": ("lora", "sd-1"),
        "demo-controlnet": ("controlnet", "sd-1"),
    }
    with _serve(root, env, "/api/v1/app/version") as url:
        yield url


@pytest.fixture
def guided_page(browser: Any, guided_ui_url: str) -> Iterator[Any]:
    with _page_on(browser, guided_ui_url, 1600, 1100) as pg:  # room below the graph for two more nodes
        yield pg


def _control_png(path: Path) -> Path:
    """A white square on black: something for a ControlNet (and edge detection) to follow."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256))
    ImageDraw.Draw(img).rectangle((64, 64, 191, 191), fill="white")
    img.save(path)
    return path


def _options(select: Any, count: int) -> list[str]:
    """The option values of a select, once it shows `count` of them (the models load after the page)."""
    sync_api.expect(select.locator("option")).to_have_count(count)
    return [str(v) for v in select.locator("option").evaluate_all("os => os.map(o => o.value)")]


def _last_item(pg: Any, url: str) -> dict[str, Any]:
    items = pg.request.get(url + "/api/v1/queue/default/list?limit=1000").json()["items"]
    latest = max(items, key=lambda i: i["item_id"])
    got: dict[str, Any] = pg.request.get(f"{url}/api/v1/queue/default/i/{latest['item_id']}").json()
    return got


def test_generate_with_a_lora_and_a_controlnet(guided_page: Any, guided_ui_url: str, tmp_path: Path) -> None:
    """Generate offers only main models to generate with, the LoRA and ControlNet of the model's
    base in their own sections, and sends them on the txt2img node; the image changes with them."""
    pg, url = guided_page, guided_ui_url
    expect = sync_api.expect
    expect(pg.get_by_test_id("model")).to_have_value("demo-sd")
    assert _options(pg.get_by_test_id("model"), 1) == ["demo-sd"]  # not the LoRA, not the ControlNet
    assert _options(pg.get_by_test_id("lora-choice"), 1) == ["demo-lora"]
    assert _options(pg.get_by_test_id("controlnet-model"), 2) == ["", "demo-controlnet"]
    for test_id, value in (("width", "256"), ("height", "256"), ("steps", "4")):
        pg.get_by_test_id(test_id).fill(value)
    pg.get_by_label("Random").uncheck()
    pg.get_by_test_id("seed").fill("7")

    def generate() -> str:
        before = pg.get_by_test_id("result").get_attribute("src") if pg.get_by_test_id("result").count() else None
        pg.get_by_test_id("invoke").click()
        expect(pg.get_by_test_id("progress-text")).to_contain_text("1/1 done", timeout=120_000)
        result = pg.get_by_test_id("result")
        expect(result).not_to_have_attribute("src", before or "")
        return str(result.get_attribute("src"))

    plain = generate()

    pg.get_by_test_id("lora-add").click()
    expect(pg.get_by_test_id("lora-row")).to_have_count(1)
    pg.get_by_test_id("lora-weight-demo-lora").fill("0.5")
    pg.get_by_test_id("controlnet-model").select_option("demo-controlnet")
    # a ControlNet without its image is explained, and nothing is enqueued
    pg.get_by_test_id("invoke").click()
    expect(pg.get_by_role("alert").filter(has_text="Choose a control image")).to_contain_text("demo-controlnet")
    picker = pg.get_by_test_id("control-image")
    picker.locator("input[type=file]").set_input_files(str(_control_png(tmp_path / "square.png")))
    expect(picker.locator("img")).to_be_visible()
    pg.get_by_test_id("control-weight").fill("0.8")
    pg.get_by_test_id("control-end").fill("0.5")
    shot(pg, "generate-lora-controlnet")
    guided = generate()
    assert guided != plain

    item = _last_item(pg, url)
    assert item["status"] == "completed"
    assert item["field_values"] == [{"node_path": "gen", "field_name": "seed", "value": 7}]
    node = item["graph"]["nodes"]["gen"]
    assert node["type"] == "txt2img"
    assert node["loras"] == [{"name": "demo-lora", "weight": 0.5}]
    (control,) = node["control"]
    assert control["control_model"] == "demo-controlnet"
    assert (control["control_weight"], control["begin_step_percent"], control["end_step_percent"]) == (0.8, 0, 0.5)
    assert control["image"]["image_name"]
    # the two results differ in their pixels, not only their names
    a, b = (pg.request.get(url + src.split("?")[0]).body() for src in (plain, guided))
    assert a != b


def test_workflow_editor_adds_a_controlnet_with_canny_edges_and_runs_it(guided_page: Any, tmp_path: Path) -> None:
    """A granular txt2img graph opened in the editor; canny_edge and controlnet nodes dragged in and
    wired into denoise_latents.control; the ControlNet picker offers only ControlNets; it runs."""
    pg = guided_page
    expect = sync_api.expect

    def edge(src: str, out: str, dst: str, inp: str) -> dict[str, Any]:
        return {"source": {"node_id": src, "field": out}, "destination": {"node_id": dst, "field": inp}}

    graph = {
        "nodes": {
            "m": {"id": "m", "type": "main_model_loader", "model": "demo-sd"},
            "p": {"id": "p", "type": "prompt", "prompt": "a lighthouse"},
            "z": {"id": "z", "type": "noise", "seed": 3, "width": 256, "height": 256},
            "d": {"id": "d", "type": "denoise_latents", "steps": 3},
            "l": {"id": "l", "type": "latents_to_image"},
        },
        "edges": [
            edge("m", "clip", "p", "clip"),
            edge("m", "unet", "d", "unet"),
            edge("p", "conditioning", "d", "positive_conditioning"),
            edge("z", "latents", "d", "noise"),
            edge("d", "latents", "l", "latents"),
            edge("m", "vae", "l", "vae"),
        ],
    }
    path = tmp_path / "granular.json"
    path.write_text(json.dumps({"graph": graph}))
    pg.get_by_role("tab", name="Workflow").click()
    canvas = pg.get_by_test_id("canvas")
    canvas.wait_for()
    pg.get_by_test_id("open-workflow").set_input_files(str(path))
    expect(pg.get_by_test_id("graph-size")).to_contain_text("5 nodes · 6 edges")
    # the loader's picker: the main model only
    loader = pg.get_by_test_id("node-m")
    assert [o for o in _options(loader.get_by_label("Model", exact=True), 2) if o] == ["demo-sd"]  # and "none"

    for i, node_type in enumerate(["canny_edge", "controlnet"]):
        pg.get_by_test_id("palette-search").fill(node_type)
        pg.get_by_test_id(f"palette-{node_type}").drag_to(canvas, target_position={"x": 60 + i * 320, "y": 620})
        expect(pg.get_by_test_id(f"node-{node_type}_1")).to_be_visible()
    net = pg.get_by_test_id("node-controlnet_1")
    picker = net.get_by_label("Control Model", exact=True)
    expect(picker).to_have_value("demo-controlnet")  # the only ControlNet: preselected
    assert [o for o in _options(picker, 2) if o] == ["demo-controlnet"]  # never the main model or the LoRA
    canny = pg.get_by_test_id("node-canny_edge_1")
    canny.locator("input[type=file]").set_input_files(str(_control_png(tmp_path / "square.png")))
    expect(canny.locator(".image-picker img")).to_be_visible()

    # the edges image is a ControlNet's image, not denoise_latents' control
    _connect(pg, "canny_edge_1", "image", "d", "control")
    expect(pg.locator(".note.error")).to_contain_text("Connection refused")
    expect(pg.locator(".react-flow__edge")).to_have_count(6)
    _connect(pg, "canny_edge_1", "image", "controlnet_1", "image")
    _connect(pg, "controlnet_1", "control", "d", "control")
    shot(pg, "workflow-controlnet")
    expect(pg.get_by_test_id("graph-size")).to_contain_text("7 nodes · 8 edges")

    pg.get_by_test_id("run-workflow").click()
    for node_id in ("canny_edge_1", "controlnet_1", "d", "l"):
        expect(pg.get_by_test_id(f"node-{node_id}")).to_have_attribute("data-status", "done", timeout=120_000)
    result = pg.get_by_test_id("node-l").get_by_test_id("node-result-image")
    expect(result).to_be_visible()
    assert result.evaluate("img => img.naturalWidth") == 256

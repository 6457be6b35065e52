"""The plugin as a user meets it, in fresh processes: loaded lazily (installed but not selected, boto3
is never imported), selected without being installed (one line naming `invokeai-s3`, exit status 2),
and `invokeai run` storing images in the bucket."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_config
from s3_helpers import MotoServer, free_port

TESTS = Path(__file__).parent
AWS_MODULES = ("boto3", "botocore", "s3transfer")


def env_for(root: Path, load_plugins: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INVOKEAI_")}
    env.update(INVOKEAI_ROOT=str(root), HF_HUB_OFFLINE="1")
    if load_plugins is not None:
        env["INVOKEAI_LOAD_PLUGINS"] = load_plugins
    return env


def run_python(code: str, root: Path, load_plugins: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_for(root, load_plugins), timeout=120
    )


def run_cli(*args: str, root: Path, load_plugins: str | None = None) -> subprocess.CompletedProcess[str]:
    code = "import sys; from invokeai_core.cli.main import main; sys.argv = ['invokeai', *sys.argv[1:]]; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=env_for(root, load_plugins),
        timeout=120,
    )


# == lazy: installed, configured, not selected ========================================================
GRAPH_PROBE = """
import json, sys
sys.path.insert(0, {tests!r})
from invokeai_core import load_config
from invokeai_core import Graph
from invokeai_core import Invoker
from invokeai_core import PluginHost
from invokeai_core.testing import make_plugin
from s3_nodes import ALL_NODES, GRAPH

config = load_config()
host = PluginHost(config).load()
host.register_plugin(make_plugin(*ALL_NODES), "s3probe")
invoker = Invoker.from_config(config, host).start()
session = invoker.run_graph(Graph.from_dict(GRAPH, invoker.registry), timeout=60)
names = sorted(r.image_name for r in invoker.services.image_records.list().items)
paths = [invoker.services.images.get_path(n) for n in names]
invoker.stop()
print(json.dumps({{
    "status": session.status,
    "errors": {{k: v.message for k, v in session.errors_by_source().items()}},
    "store": type(invoker.services.images).__name__,
    "paths": paths,
    "s3": host.plugins["s3"].to_dict(),
    "modules": sorted(m for m in sys.modules if m.split(".")[0] in {modules!r}),
    "storage_module": "invokeai_s3.storage" in sys.modules,
}}))
"""

CLI_PROBE = """
import json, sys
sys.argv = {argv!r}
try:
    from invokeai_core.cli.main import main
    main()
except SystemExit:
    pass
sys.stdout.flush()
sys.stderr.write("MODULES=" + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {modules!r})) + "\\n")
"""


@pytest.fixture
def local_root(invokeai_root: Path, s3_settings: dict[str, Any]) -> Path:
    """A root whose invokeai.toml configures [plugins.s3] fully but keeps `images = "local"`."""
    write_config(invokeai_root, s3_settings, {"images": "local"})
    return invokeai_root


def test_with_images_local_a_graph_run_never_imports_boto3(local_root: Path) -> None:
    # every plugin of the environment is loaded (no INVOKEAI_LOAD_PLUGINS), invokeai-s3 among them
    res = run_python(GRAPH_PROBE.format(tests=str(TESTS), modules=AWS_MODULES), local_root)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["status"] == "completed", out["errors"]
    assert out["s3"]["status"] == "loaded" and out["s3"]["dist"] == "invokeai-s3"
    assert out["s3"]["services"] == ["images:s3"]
    assert out["store"] == "LocalImageFileStorage"
    assert len(out["paths"]) == 2 and all(Path(p).is_file() for p in out["paths"])
    assert out["modules"] == []
    assert out["storage_module"] is False


@pytest.mark.parametrize(
    "argv",
    [
        ["invokeai", "--help"],
        ["invokeai", "plugins"],
        ["invokeai", "plugins", "--json"],
        ["invokeai", "nodes"],
        ["invokeai", "config", "show"],
        ["invokeai", "run", "--help"],
        ["invokeai", "s3", "--help"],
    ],
)
def test_with_images_local_the_cli_never_imports_boto3(local_root: Path, argv: list[str]) -> None:
    code = CLI_PROBE.format(argv=argv, modules=AWS_MODULES)
    res = run_python(code, local_root)
    line = next((ln for ln in res.stderr.splitlines() if ln.startswith("MODULES=")), None)
    assert line is not None, res.stderr
    assert json.loads(line[len("MODULES=") :]) == []
    assert "Traceback" not in res.stderr


def test_plugins_lists_the_s3_store(local_root: Path) -> None:
    res = run_cli("plugins", "--json", root=local_root, load_plugins="s3")
    assert res.returncode == 0, res.stderr
    plugins = {p["name"]: p for p in json.loads(res.stdout)}
    assert plugins["s3"]["status"] == "loaded"
    assert plugins["s3"]["dist"] == "invokeai-s3"


# == selected but not installed =======================================================================
@pytest.mark.parametrize("load_plugins", ["", "nodes"])
def test_selecting_s3_without_the_plugin_is_one_line_naming_the_distribution(
    invokeai_root: Path, load_plugins: str
) -> None:
    (invokeai_root / "graph.json").write_text('{"nodes": {}, "edges": []}')
    write_config(invokeai_root, {"bucket": "some-bucket"}, {"images": "s3"})
    # INVOKEAI_LOAD_PLUGINS without s3: as if invokeai-s3 were not installed
    res = run_cli("run", "-f", str(invokeai_root / "graph.json"), root=invokeai_root, load_plugins=load_plugins)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "invokeai-s3" in lines[0] and "pip install invokeai-s3" in lines[0]
    assert "unknown images implementation 's3'" in lines[0]
    assert res.stdout == ""


def test_selecting_s3_on_the_command_line_without_the_plugin(invokeai_root: Path) -> None:
    res = run_cli("-o", "services.images=s3", "run", "--json", root=invokeai_root, load_plugins="")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "pip install invokeai-s3" in res.stderr


def test_selecting_s3_without_a_bucket_is_one_line(invokeai_root: Path) -> None:
    (invokeai_root / "graph.json").write_text('{"nodes": {}, "edges": []}')
    write_config(invokeai_root, None, {"images": "s3"})
    res = run_cli("run", "-f", str(invokeai_root / "graph.json"), root=invokeai_root, load_plugins="s3")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "needs a bucket" in lines[0] and "[plugins.s3]" in lines[0]


# == invokeai run with images = "s3" ===================================================================
needs_nodes = pytest.mark.skipif(
    importlib.util.find_spec("invokeai_nodes") is None, reason="needs the invokeai-nodes node pack"
)


@needs_nodes
def test_invokeai_run_stores_images_in_the_bucket_and_exports_them(
    invokeai_root: Path, s3_settings: dict[str, Any], bucket: str, keys_in: Any, tmp_path: Path
) -> None:
    write_config(invokeai_root, s3_settings, {"images": "s3"})
    out = tmp_path / "exported"
    pipeline = "blank_image --width 40 --height 24 --color #00ff00 | save_image"
    res = run_cli("run", pipeline, "--json", "--out", str(out), root=invokeai_root, load_plugins="s3,nodes")
    assert res.returncode == 0, res.stderr
    result = json.loads(res.stdout)
    assert result["status"] == "completed"
    saved = result["results"]["2"]["image"]["image_name"]
    keys = keys_in(bucket, "invokeai/images/")
    assert f"invokeai/images/{saved}" in keys
    assert len(keys) == 2  # the blank image (intermediate) and the saved one
    from PIL import Image

    exported = out / saved
    assert exported.is_file()
    with Image.open(exported) as png:
        assert png.size == (40, 24) and png.convert("RGB").getpixel((0, 0)) == (0, 255, 0)


@needs_nodes
def test_invokeai_run_against_an_unreachable_store_fails_clearly(
    invokeai_root: Path, s3_settings: dict[str, Any], moto_server: MotoServer
) -> None:
    port = free_port()
    write_config(invokeai_root, {**s3_settings, "endpoint_url": f"http://127.0.0.1:{port}"}, {"images": "s3"})
    res = run_cli(
        "run", "blank_image --width 8 --height 8 | save_image", "--json", root=invokeai_root, load_plugins="s3,nodes"
    )
    assert res.returncode == 1, res.stderr
    result = json.loads(res.stdout)
    assert result["status"] == "failed"
    error = result["errors"]["1"]
    assert error["type"] == "S3ConnectionError"
    assert f"127.0.0.1:{port}" in error["message"] and "unreachable" in error["message"]
    assert "2" not in result["results"]


# == invokeai s3 check ===============================================================================
@pytest.mark.parametrize("urls", ["proxy", "presigned"])
def test_check_passes_against_a_working_store(
    invokeai_root: Path, s3_settings: dict[str, Any], bucket: str, keys_in: Any, urls: str
) -> None:
    write_config(invokeai_root, {**s3_settings, "urls": urls}, {"images": "s3"})
    res = run_cli("s3", "check", root=invokeai_root, load_plugins="s3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"bucket: s3://{bucket}/invokeai/ at {s3_settings['endpoint_url']} answers"
    assert "write, read back: ok" in lines and "delete: ok" in lines
    assert ("presigned URL: ok" in lines) == (urls == "presigned")
    assert keys_in(bucket) == set()  # the probe object is gone


def test_check_read_only_and_json_and_the_note_when_not_selected(
    invokeai_root: Path, s3_settings: dict[str, Any], bucket: str
) -> None:
    write_config(invokeai_root, s3_settings, {"images": "local"})
    res = run_cli("s3", "check", "--read-only", root=invokeai_root, load_plugins="s3")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1:] == [
        "list: ok",
        "note: services.images is 'local'; set it to 's3' to store images in this bucket",
    ]
    res = run_cli("s3", "check", "--json", root=invokeai_root, load_plugins="s3")
    out = json.loads(res.stdout)
    assert (out["ok"], out["selected"], out["error"]) == (True, False, None)
    assert out["steps"][-1] == "delete: ok"


def test_check_reports_a_failing_store_in_one_line(invokeai_root: Path, s3_settings: dict[str, Any]) -> None:
    write_config(invokeai_root, {**s3_settings, "bucket": "missing-bucket"}, {"images": "s3"})
    res = run_cli("s3", "check", root=invokeai_root, load_plugins="s3")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "missing-bucket" in lines[0] and "NoSuchBucket" in lines[0], lines
    assert "check plugins.s3.bucket" in lines[0]
    write_config(invokeai_root, {**s3_settings, "endpoint_url": f"http://127.0.0.1:{free_port()}"}, {"images": "s3"})
    res = run_cli("s3", "check", "--json", root=invokeai_root, load_plugins="s3")
    assert res.returncode == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False and "unreachable" in out["error"]


def test_check_with_bad_settings_exits_2(invokeai_root: Path) -> None:
    write_config(invokeai_root, {"bucket": "abc", "aws_secret_access_key": "x"}, {"images": "s3"})
    res = run_cli("s3", "check", root=invokeai_root, load_plugins="s3")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "never read from the configuration" in res.stderr

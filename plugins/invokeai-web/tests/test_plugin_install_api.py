"""Installing node packs over the API: off by default, needs the access token when on, and refuses
what the CLI refuses. A real `invokeai serve` runs in a throwaway environment (the kernel's
tests/plugin_packs.py: real wheels, real pip; the project's own environment is never changed)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import Server

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from plugin_packs import Env, build_wheelhouse

TOKEN = "a-test-token-of-24-chars"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheelhouse(tmp_path_factory.mktemp("wheelhouse"))


@pytest.fixture
def env_server(tmp_path: Path, wheels: Path) -> Iterator[tuple[Env, str]]:
    """`invokeai serve` of a throwaway environment holding invokeai-tp-pin, with API installs on."""
    env = Env(tmp_path / "venv")
    root = tmp_path / "root"
    root.mkdir()
    env.pip("install", "-q", "--no-index", "--find-links", str(wheels), "invokeai-tp-pin", root=root)
    (root / "invokeai.toml").write_text(
        "[plugins.web]\n"
        "allow_plugin_install = true\n"
        f'access_token = "{TOKEN}"\n'
        f'plugin_pip_options = ["--no-index", "--find-links", "{wheels}"]\n'
        "queue_processor = false\n"
    )
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen(
        [str(env.invokeai), "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=log, text=True, env=env.env(root)
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert "serving on" in line, (line, (tmp_path / "serve.log").read_text())
        yield env, line.split("serving on ", 1)[1].split()[0] + "/api/v1"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def test_off_by_default(server: Server) -> None:
    with server.client() as c:
        res = c.post("/plugins/install", json={"specs": ["invokeai-tp-good"]})
        assert res.status_code == 403 and "allow_plugin_install" in res.json()["detail"]
        assert c.post("/plugins/uninstall", json={"name": "tp_pin"}).status_code == 403
        check = c.get("/plugins/check")
        assert check.status_code == 200 and set(check.json()) == {"ok", "problems", "environment"}


@pytest.mark.parametrize("web_settings_overrides", [{"allow_plugin_install": True}])
def test_on_without_a_token_is_still_refused(server: Server) -> None:
    with server.client() as c:
        res = c.post("/plugins/install", json={"specs": ["invokeai-tp-good"]})
    assert res.status_code == 403 and "access_token" in res.json()["detail"]


def test_install_over_the_api(env_server: tuple[Env, str], tmp_path: Path) -> None:
    env, api = env_server
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=api, timeout=300) as c:
        assert c.post("/plugins/install", json={"specs": ["invokeai-tp-good"]}).status_code == 401  # no token
        bad = c.post("/plugins/install", json={"specs": ["--index-url=http://evil"]}, headers=auth)
        assert bad.status_code == 422
        refused = c.post("/plugins/install", json={"specs": ["invokeai-tp-bad"]}, headers=auth)
        assert refused.status_code == 409, refused.text
        [item] = refused.json()["detail"]
        assert item["type"] == "PluginChangeRefused" and item["name"] == "tp-dep" and item["kind"] == "downgrade"
        assert item["required_by"] == ["invokeai-tp-pin requires tp-dep>=2"]
        assert item["wanted_by"] == ["invokeai-tp-bad 1.0 wants tp-dep<2"]
        assert "refusing to downgrade tp-dep 2.0 -> 1.0" in item["msg"]
        assert env.version("tp-dep", tmp_path) == "2.0" and env.version("invokeai-tp-bad", tmp_path) is None
        missing = c.post("/plugins/install", json={"specs": ["invokeai-tp-nothing"]}, headers=auth)
        assert missing.status_code == 422 and "invokeai-tp-nothing" in missing.text
        done = c.post("/plugins/install", json={"specs": ["invokeai-tp-good"]}, headers=auth)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["installed"] is True and body["restart_required"] is True
        assert [(c["name"], c["kind"]) for c in body["changes"]] == [("invokeai-tp-good", "add")]
        [plugin] = body["plugins"]
        assert plugin["name"] == "tp_good" and plugin["status"] == "loaded" and plugin["nodes"] == ["tp_good_echo"]
        assert env.version("invokeai-tp-good", tmp_path) == "1.0"
        assert c.get("/plugins/check", headers=auth).json()["ok"] is True
        kept = c.post("/plugins/uninstall", json={"name": "tp-dep"}, headers=auth)
        assert kept.status_code == 409 and kept.json()["detail"][0]["required_by"]
        gone = c.post("/plugins/uninstall", json={"name": "tp_good"}, headers=auth)
        assert gone.status_code == 200 and gone.json()["removed"] is True
        assert env.version("invokeai-tp-good", tmp_path) is None
        openapi = c.get(api.removesuffix("/api/v1") + "/openapi.json", headers=auth).json()
    install = openapi["paths"]["/api/v1/plugins/install"]["post"]
    assert install["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InstallRequest")
    assert {"200", "403", "409", "422"} <= set(install["responses"])

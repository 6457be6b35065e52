"""`invokeai serve` for real: a subprocess on a free 127.0.0.1 port, and the refusals before it listens.
Also: the hook module stays light."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import INVOKEAI
from conftest import serve_env as _env
from conftest import start_serve as _start


def test_serve_runs_a_real_server_and_stops_on_sigint(tmp_path: Path) -> None:
    import httpx

    proc, url = _start(tmp_path)
    try:
        assert url.startswith("http://127.0.0.1:")
        version = httpx.get(url + "/api/v1/app/version", timeout=30).json()
        assert version["web_version"] and "web" in version["plugins"]
        plugins = {p["name"]: p for p in httpx.get(url + "/api/v1/plugins", timeout=30).json()}
        assert plugins["web"]["status"] == "loaded" and "register_hookspecs" in plugins["web"]["hooks"]
        graph = {"nodes": {"n": {"id": "n", "type": "tp_const", "value": 5}}} if "testpack" in plugins else None
        r = httpx.post(url + "/api/v1/sessions", json=graph, timeout=30)
        assert r.status_code == 201
        status = httpx.get(url + "/api/v1/queue/default/status", timeout=30).json()
        assert status["processor"]["started"] is True
        batch = {"graph": {"nodes": {"n": {"id": "n", "type": "integer", "value": 5}}}}
        r = httpx.post(url + "/api/v1/queue/default/enqueue_batch", json={"batch": batch}, timeout=30)
        (item_id,) = r.json()["item_ids"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/api/v1/queue/default/i/{item_id}", timeout=30).json()["status"] != "completed":
            assert time.monotonic() < deadline, "the queued item did not complete"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    log = proc.stderr.read() if proc.stderr else ""
    assert rc == 0, log
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/api/v1/app/version", timeout=5)
    # the log on stderr: a line per request, per session start and finish, and the shutdown
    assert re.search(r'INFO uvicorn\.access: 127\.0\.0\.1:\d+ - "GET /api/v1/app/version HTTP/1\.1" 200$', log, re.M)
    assert re.search(rf"INFO invokeai\.web: session \w+ started \(queue default, item {item_id}\)$", log, re.M)
    assert re.search(rf"session \w+ completed in [\d.]+ s \(queue default, item {item_id}\)$", log, re.M)
    assert log.rstrip().endswith(f"INFO invokeai.web: stopped serving {url}"), log
    assert "Uvicorn running" not in log and "Started server process" not in log  # uvicorn's chatter: debug only


def test_serve_with_a_token_from_the_environment(tmp_path: Path) -> None:
    import httpx

    proc, url = _start(tmp_path, "--no-queue-processor", INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN="tok-123")
    try:
        assert httpx.get(url + "/api/v1/app/version", timeout=30).status_code == 401
        r = httpx.get(url + "/api/v1/app/version", headers={"Authorization": "Bearer tok-123"}, timeout=30)
        assert r.status_code == 200
        status = httpx.get(url + "/api/v1/queue/default/status", headers={"Authorization": "Bearer tok-123"}).json()
        assert status["processor"]["started"] is False
    finally:
        proc.terminate()
        proc.wait(30)


def _run(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([INVOKEAI, *args], capture_output=True, text=True, env=_env(root, **env), timeout=60)


def test_binding_off_loopback_needs_a_token(tmp_path: Path) -> None:
    res = _run(tmp_path, "serve", "--host", "0.0.0.0", "--port", "0")
    assert res.returncode == 2
    assert "refusing to bind 0.0.0.0" in res.stderr and "access_token" in res.stderr
    assert res.stderr.count("\n") == 1


def test_a_second_server_on_the_same_root_is_refused(tmp_path: Path) -> None:
    import httpx

    proc, _url = _start(tmp_path)
    try:
        res = _run(tmp_path, "serve", "--port", "0")
        assert res.returncode == 2 and "cannot start" in res.stderr and "processor" in res.stderr
        assert res.stderr.count("\n") == 1
        second, url = _start(tmp_path, "--no-queue-processor")  # a second API process without one is fine
        try:
            assert httpx.get(url + "/api/v1/queue/default/status", timeout=30).json()["processor"]["started"] is False
        finally:
            second.terminate()
        assert second.wait(30) == 0
    finally:
        proc.terminate()
        proc.wait(30)


def test_bad_settings_and_a_busy_port_are_one_line_errors(tmp_path: Path) -> None:
    res = _run(tmp_path, "-o", "plugins.web.port=abc", "serve")
    assert res.returncode == 2 and "plugins.web.port" in res.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = _run(tmp_path, "serve", "--port", str(port))
    assert res.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in res.stderr


def test_the_hook_module_and_cli_import_nothing_heavy(tmp_path: Path) -> None:
    code = (
        "import sys, json; import invokeai_web, invokeai_web.hooks, invokeai_web.cli, invokeai_web.settings, "
        "invokeai_web.hookspecs; print(json.dumps(sorted(m for m in ('fastapi', 'starlette', 'socketio', "
        "'uvicorn', 'engineio', 'torch') if m in sys.modules)))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert json.loads(res.stdout) == []
    res = _run(tmp_path, "serve", "--help")
    assert res.returncode == 0 and "Authorization: Bearer TOKEN" in res.stdout


def test_invokeai_plugins_lists_the_web_plugin(tmp_path: Path) -> None:
    res = _run(tmp_path, "plugins", "--json")
    web: dict[str, Any] = next(p for p in json.loads(res.stdout) if p["name"] == "web")
    assert web["status"] == "loaded" and web["dist"] == "invokeai-web"
    assert sorted(web["hooks"]) == ["register_commands", "register_hookspecs"]

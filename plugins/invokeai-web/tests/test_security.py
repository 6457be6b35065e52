"""The access token, loopback binding, host and origin checks, CORS."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from invokeai_web.settings import WebSettings, is_loopback, load_web_settings

from invokeai_core import ConfigError

TOKEN = "s3cret-token-of-24-chars"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    settings = WebSettings(host=host)
    if loopback:
        settings.check_bind()
    else:
        with pytest.raises(ConfigError, match="access_token"):
            settings.check_bind()
        WebSettings(host=host, access_token=TOKEN).check_bind()


def test_settings_come_from_plugins_web_and_flags_override(invokeai_root: Any) -> None:
    from invokeai_core import load_config

    (invokeai_root / "invokeai.toml").write_text(
        '[plugins.web]\nport = 9191\ncors_origins = ["http://a.example"]\nmax_upload_mb = 5\n'
    )
    config = load_config(root=invokeai_root, environ={"INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN": "1234"})
    settings = load_web_settings(config, {"port": 9292, "host": None})
    assert (settings.port, settings.host, settings.access_token) == (9292, "127.0.0.1", "1234")
    assert settings.cors_origins == ["http://a.example"] and settings.max_upload_bytes == 5 * 2**20
    assert settings.public_dict()["access_token"] == "********"
    with pytest.raises(ConfigError, match=r"plugins\.web\.port"):
        load_web_settings(config, {"port": 70000})
    with pytest.raises(ConfigError, match=r"unknown setting 'plugins\.web\.prot'"):
        load_web_settings(config, {"prot": 1})


class TestWithToken:
    @pytest.fixture
    def web_settings_overrides(self) -> dict[str, Any]:
        return {"access_token": TOKEN, "auth_failures_per_minute": 1000}  # the throttle has a test of its own

    def test_http_needs_the_bearer_token(self, server: Any) -> None:
        import httpx

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic x"}):
            for path in ("/api/v1/app/version", "/openapi.json", "/docs", "/api/v1/nodes", "/nothing-here"):
                r = httpx.get(server.url + path, headers=headers)
                assert r.status_code == 401, (headers, path)
                assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.post(server.url + "/api/v1/sessions", json={})
        assert r.status_code == 401
        assert server.invoker.services.sessions.list().total == 0
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(server.url + "/api/v1/app/version", headers=ok).status_code == 200
        assert httpx.get(server.url + "/openapi.json", headers=ok).status_code == 200
        config = httpx.get(server.url + "/api/v1/app/config", headers=ok).json()
        assert TOKEN not in str(config) and config["web"]["access_token"] == "********"

    def test_the_ui_signs_in_once_with_a_session_cookie(self, server: Any) -> None:
        import httpx

        assert httpx.get(server.url + "/").status_code == 200  # the UI shell itself is public
        assert httpx.get(server.url + "/api/v1/auth").json() == {"required": True, "authenticated": False}
        wrong = httpx.post(server.url + "/api/v1/auth/login", json={"token": "wrong"})
        assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
        assert httpx.post(server.url + "/api/v1/auth/login", json={}).status_code == 422
        with httpx.Client(base_url=server.url) as browser:
            r = browser.post("/api/v1/auth/login", json={"token": TOKEN})
            assert r.status_code == 204
            cookie = r.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
            assert TOKEN not in cookie  # a signed sign-in id, never the token
            assert browser.get("/api/v1/auth").json() == {"required": True, "authenticated": True}
            assert browser.get("/api/v1/app/version").status_code == 200
            assert browser.get("/openapi.json").status_code == 200
            assert browser.post("/api/v1/auth/logout").status_code == 204
            assert browser.get("/api/v1/app/version").status_code == 401
        forged = {"Cookie": "invokeai_session=" + "0" * 64}
        assert httpx.get(server.url + "/api/v1/app/version", headers=forged).status_code == 401
        assert httpx.get(server.url + "/assets/nothing.js").status_code == 404  # public, and absent
        assert httpx.post(server.url + "/", content=b"x").status_code == 401  # only GETs of the UI are open

    @pytest.mark.anyio
    async def test_socketio_accepts_the_session_cookie(self, server: Any) -> None:
        import httpx
        import socketio
        from conftest import Watcher
        from invokeai_web.auth import COOKIE_NAME

        r = httpx.post(server.url + "/api/v1/auth/login", json={"token": TOKEN})
        assert r.status_code == 204
        w = await Watcher(server.url, {"Cookie": f"{COOKIE_NAME}={r.cookies[COOKIE_NAME]}"}, None).connect()
        await w.subscribe("queue", "default")
        await w.close()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await Watcher(server.url, {"Cookie": f"{COOKIE_NAME}=forged"}, None).connect()

    @pytest.mark.anyio
    async def test_socketio_needs_the_token(self, server: Any) -> None:
        import socketio
        from conftest import Watcher

        for headers, auth in (({}, None), ({"Authorization": "Bearer wrong"}, None), ({}, {"token": "wrong"})):
            w = Watcher(server.url, headers, auth)
            with pytest.raises(socketio.exceptions.ConnectionError):
                await w.connect()
        for headers, auth in (({"Authorization": f"Bearer {TOKEN}"}, None), ({}, {"token": TOKEN})):
            w = await Watcher(server.url, headers, auth).connect()
            await w.subscribe("queue", "default")
            await w.close()


def test_without_a_token_a_foreign_host_header_or_origin_is_refused(server: Any) -> None:
    import httpx

    url = server.url + "/api/v1/app/version"
    port = server.url.rsplit(":", 1)[1]
    assert httpx.get(url).status_code == 200
    assert httpx.get(url, headers={"Host": f"localhost:{port}"}).status_code == 200
    r = httpx.get(url, headers={"Host": f"attacker.example:{port}"})  # DNS rebinding
    assert r.status_code == 421
    r = httpx.post(server.url + "/api/v1/sessions", headers={"Origin": "http://attacker.example"})
    assert r.status_code == 403 and server.invoker.services.sessions.list().total == 0
    assert httpx.get(url, headers={"Origin": server.url}).status_code == 200  # same origin
    r = httpx.options(url, headers={"Origin": "http://a.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers  # CORS is off
    # `Origin: null` (a sandboxed frame, a file:// page) may read what any page may, but change nothing
    null = {"Origin": "null"}
    assert httpx.get(url, headers=null).status_code == 200
    for method, path in (("POST", "/sessions"), ("POST", "/images/upload"), ("PUT", "/queue/default/clear")):
        r = httpx.request(method, server.url + "/api/v1" + path, headers=null)
        assert r.status_code == 403 and "Origin: null" in r.json()["detail"], (method, path)
    assert httpx.get(server.url + "/socket.io/?EIO=4&transport=polling", headers=null).status_code == 403
    assert server.invoker.services.sessions.list().total == 0


class TestCors:
    @pytest.fixture
    def web_settings_overrides(self) -> dict[str, Any]:
        return {"cors_origins": ["http://ui.example"]}

    def test_configured_origins_get_cors_headers(self, server: Any) -> None:
        import httpx

        url = server.url + "/api/v1/app/version"
        r = httpx.options(url, headers={"Origin": "http://ui.example", "Access-Control-Request-Method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://ui.example"
        r = httpx.get(url, headers={"Origin": "http://ui.example"})
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://ui.example"
        r = httpx.get(url, headers={"Origin": "http://other.example"})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_every_way_to_start_the_server_enforces_the_token_rule_off_loopback(
    invokeai_host: Any, invokeai_config: Any
) -> None:
    """`invokeai serve` refuses at start (test_cli.py); `ServerThread` (notebooks, tests) too; and an app
    run by anything else (a bare uvicorn on 0.0.0.0) refuses every request that reached another address."""
    import httpx
    from invokeai_web.app import ServerThread, create_app

    from invokeai_core import Invoker

    invoker = Invoker.from_config(invokeai_config, invokeai_host)
    for settings, error in (
        (WebSettings(port=0), "without authentication"),
        (WebSettings(port=0, access_token="short-token"), "too few"),
    ):
        app = create_app(invoker, settings)
        for host in ("0.0.0.0", "::"):
            with pytest.raises(ConfigError, match=f"refusing to bind {host}: .*{error}.*access_token"):
                ServerThread(app, host=host).__enter__()
    with pytest.raises(ConfigError, match=r"refusing to bind 0\.0\.0\.0"):
        ServerThread(lambda scope, receive, send: None, host="0.0.0.0").__enter__()

    # what a non-loopback connection looks like to the app: a local address that is not loopback,
    # with a Host header that pretends to be (a remote client may send any Host)
    async def from_elsewhere() -> Any:
        bare = httpx.ASGITransport(app=create_app(invoker, WebSettings(port=0)))
        async with httpx.AsyncClient(transport=bare, base_url="http://192.0.2.7:9090") as c:
            return await c.get("/api/v1/app/version", headers={"Host": "127.0.0.1:9090"})

    r = asyncio.run(from_elsewhere())
    assert r.status_code == 403 and "loopback addresses only, not 192.0.2.7" in r.json()["detail"]

    strong = create_app(invoker, WebSettings(port=0, access_token=TOKEN))
    with ServerThread(strong, host="0.0.0.0") as url:
        port = url.rsplit(":", 1)[1]
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/app/version").status_code == 401
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/app/version", headers=ok).status_code == 200

"""Test helpers: moto's S3 server in a subprocess, a proxy that fails the first requests (transient
errors), and free ports."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def moto_server_executable() -> str:
    """`moto_server` of the running interpreter's environment."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        raise RuntimeError(f"{exe} does not exist: install the test dependencies (pip install 'invokeai-s3[test]')")
    return str(exe)


@dataclass
class MotoServer:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str = "s3", **credentials: str) -> Any:
        import boto3
        import botocore.config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            config=botocore.config.Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
            **credentials,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _answers(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        conn.request("GET", "/moto-api/")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def start_moto_server(folder: Path, *, env: dict[str, str] | None = None, timeout: float = 30.0) -> MotoServer:
    """Start `moto_server -H 127.0.0.1 -p PORT` on a free port and wait until it answers HTTP."""
    exe = moto_server_executable()
    last_error = ""
    for _ in range(3):  # a free port can be taken between choosing and binding it
        port = free_port()
        log = folder / f"moto-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [exe, "-H", "127.0.0.1", "-p", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = log.read_text(errors="replace")[-2000:]
                break
            if _answers(port):
                return MotoServer(f"http://127.0.0.1:{port}", port, process, log)
            time.sleep(0.05)
        else:
            process.kill()
            process.wait(10)
            raise RuntimeError(f"moto_server did not answer on port {port} within {timeout} s: {log.read_text()}")
    raise RuntimeError(f"moto_server did not start: {last_error}")


def start_moto_with_iam(folder: Path) -> MotoServer:
    """A moto server that checks credentials (IAM), with a bucket and a user allowed only to read it.

    moto lets the first `INITIAL_NO_AUTH_ACTION_COUNT` requests through without authentication: exactly
    the four set-up requests below. `extra` has the bucket and the reader's access key."""
    server = start_moto_server(folder, env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    creds = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    s3 = server.client("s3", **creds)
    iam = server.client("iam", **creds)
    bucket = "guarded-bucket"
    s3.create_bucket(Bucket=bucket)
    iam.create_user(UserName="reader")
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read-only", PolicyDocument=json.dumps(policy))
    server.extra = {"bucket": bucket, "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    return server


SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>flaky</RequestId></Error>"
)


class FlakyProxy:
    """An HTTP proxy in front of an S3 endpoint that answers the first `fail_first` requests with
    `503 SlowDown` (a transient error S3 really sends) and forwards the rest. `requests` counts every
    request it received, failed or forwarded."""

    def __init__(self, target_port: int, fail_first: int) -> None:
        self.target_port = target_port
        self.fail_first = fail_first
        self.requests = 0
        self.methods: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy.requests += 1
                    proxy.methods.append(self.command)
                    fail = proxy.requests <= proxy.fail_first
                if fail:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(SLOW_DOWN)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", proxy.target_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

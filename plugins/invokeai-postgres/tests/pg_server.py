"""A real PostgreSQL server for the tests: Debian's `initdb` and `postgres`, a fresh cluster in a
temporary folder, on 127.0.0.1 and a free port, started and stopped by its PID.

As root (CI containers), the cluster belongs to an unprivileged user (`postgres`, which Debian's
package creates) and the server runs as that user: PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def find_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


INITDB = find_bin("initdb")
POSTGRES = find_bin("postgres")
MISSING = "PostgreSQL is not installed (apt-get install -y postgresql, or scripts/setup.sh)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PgServer:
    """One cluster; `start()` / `stop()` / `kill()` the server process (same data, same port)."""

    def __init__(self) -> None:
        if INITDB is None or POSTGRES is None:
            pytest.skip(MISSING)
        # its own folder under /tmp: pytest's are private to root, which the server's user cannot enter
        work = Path(tempfile.mkdtemp(prefix="invokeai-pg-"))
        work.chmod(0o755)
        self.work = work
        self.data = work / "data"
        self.sockets = work / "sockets"
        self.log = work / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.user: str | None = None
        if os.getuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
            self.user = "postgres"
        self.sockets.mkdir(parents=True)
        if self.user is not None:
            for path in (work, self.sockets):
                shutil.chown(path, self.user)
        done = subprocess.run(
            [INITDB, "-D", str(self.data), "-U", "invokeai", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            user=self.user,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')[-2000:]}")

    @property
    def dsn(self) -> str:
        return f"postgresql://invokeai@127.0.0.1:{self.port}/postgres"

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://invokeai@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout: float = 30) -> None:
        assert POSTGRES is not None
        log = open(self.log, "ab")  # the server's stderr for its whole life
        if self.user is not None:
            shutil.chown(self.log, self.user)
        self.proc = subprocess.Popen(
            [
                POSTGRES,
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-h",
                "127.0.0.1",
                "-k",
                str(self.sockets),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=64MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self.user,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                import psycopg

                with psycopg.connect(self.dsn, connect_timeout=2):
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"postgres did not start: {self.log.read_text()[-2000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """A fast shutdown (SIGINT: clients are disconnected, nothing committed is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        """Stop the server and delete the cluster."""
        self.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn_for(name)

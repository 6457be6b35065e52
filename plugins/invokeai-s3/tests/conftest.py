"""Fixtures: a real S3 endpoint over HTTP on 127.0.0.1 (moto's server, one per test session), a fresh
bucket per test, and the kernel's fixtures configured with `services.images = "s3"`.

The tests run as if only the kernel and this plugin were installed (`INVOKEAI_LOAD_PLUGINS=s3`;
the web API test adds `web`), with dummy AWS credentials in the environment and every other source
of the AWS chain (files, profiles, instance metadata) switched off.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from s3_helpers import MotoServer, start_moto_server

if TYPE_CHECKING:
    from invokeai_core import InvokeAIConfig

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials from the environment (the first link of the AWS chain); nothing else."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(autouse=True)
def _only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVOKEAI_LOAD_PLUGINS", "s3")
    monkeypatch.delenv("INVOKEAI_STRICT_PLUGINS", raising=False)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """`moto_server -H 127.0.0.1 -p PORT` from this environment, on a free port, for the session."""
    server = start_moto_server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_client(moto_server: MotoServer) -> Any:
    """A plain boto3 client on the test endpoint, to look at the bucket behind the plugin's back."""
    return moto_server.client(aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def bucket(s3_client: Any) -> str:
    """A fresh, empty bucket for this test."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=name)
    return name


def bucket_keys(client: Any, bucket: str, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.update(obj["Key"] for obj in page.get("Contents") or [])
    return keys


@pytest.fixture
def keys_in(s3_client: Any) -> Callable[..., set[str]]:
    """`keys_in(bucket, prefix="")`: every object key of the bucket under the prefix."""
    return lambda bucket, prefix="": bucket_keys(s3_client, bucket, prefix)


@pytest.fixture
def s3_settings(request: pytest.FixtureRequest, moto_server: MotoServer, bucket: str) -> dict[str, Any]:
    """The `[plugins.s3]` table of the test's invokeai.toml; a test changes keys by parametrizing it
    indirectly (`@pytest.mark.parametrize("s3_settings", [{...}], indirect=True)`)."""
    settings = {
        "bucket": bucket,
        "prefix": "invokeai/",
        "region": REGION,
        "endpoint_url": moto_server.url,
        "addressing_style": "path",
        "max_attempts": 2,
        "connect_timeout": 2,
        "read_timeout": 10,
    }
    settings.update(getattr(request, "param", {}))
    return settings


def write_config(root: Path, s3: dict[str, Any] | None, services: dict[str, str]) -> Path:
    lines = ["[services]", *(f"{k} = {json.dumps(v)}" for k, v in services.items())]
    if s3 is not None:
        lines += ["", "[plugins.s3]", *(f"{k} = {json.dumps(v)}" for k, v in s3.items())]
    path = root / "invokeai.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def images_service() -> str:
    """The `services.images` value of the test's configuration."""
    return "s3"


@pytest.fixture
def invokeai_config(
    invokeai_root: Path, invokeai_storage: str, s3_settings: dict[str, Any], images_service: str
) -> InvokeAIConfig:
    """The kernel's fixture, with `services.images = "s3"` and the `[plugins.s3]` table written to
    `<root>/invokeai.toml` and read the way a user's file is."""
    from invokeai_core import load_config
    from invokeai_core.testing import STORAGE_KINDS

    services = {"images": images_service, **dict.fromkeys(STORAGE_KINDS, invokeai_storage)}
    write_config(invokeai_root, s3_settings, services)
    return load_config(root=invokeai_root, environ={})

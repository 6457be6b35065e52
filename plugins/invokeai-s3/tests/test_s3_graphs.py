"""Graphs run with `services.images = "s3"` through a real Invoker: images land in the bucket; an
unreachable endpoint, a denied request, a missing bucket or missing credentials fail the node with a
clear error and leave no image record; transient errors are retried with backoff."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from s3_helpers import FlakyProxy, MotoServer, free_port, start_moto_with_iam
from s3_nodes import ALL_NODES, GRAPH

from invokeai_core import ConfigError


@pytest.fixture
def nodes(invokeai_register_nodes: Any) -> None:
    invokeai_register_nodes(*ALL_NODES, name="s3test")


@pytest.fixture(scope="session")
def moto_iam(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A second moto server that checks credentials: a bucket and a read-only user (see s3_helpers)."""
    server = start_moto_with_iam(tmp_path_factory.mktemp("moto-iam"))
    try:
        yield server
    finally:
        server.stop()


def records_of(invoker: Any) -> list[Any]:
    page = invoker.services.image_records.list(limit=1000)
    assert page.total == len(page.items)
    return list(page.items)


def assert_failed_cleanly(run: Any, invoker: Any, error_type: str, *phrases: str) -> str:
    """The first node failed with `error_type`, whose one-line message has every phrase; nothing
    after it ran, and no image record exists."""
    assert run.status == "failed"
    error = run.errors["make"]
    assert error.type == error_type, error.message
    assert "\n" not in error.message
    for phrase in phrases:
        assert phrase in error.message, error.message
    assert "invert" not in run.results
    assert records_of(invoker) == []
    return str(error.message)


# == the happy path ==================================================================================
@pytest.mark.parametrize("invokeai_storage", ["memory", "sqlite"])
def test_a_graph_stores_its_images_in_the_bucket(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any, bucket: str, keys_in: Any, s3_client: Any
) -> None:
    from invokeai_s3.storage import S3ImageFileStorage

    store = invokeai_invoker.services.images
    assert isinstance(store, S3ImageFileStorage)
    run = invokeai_run_graph(GRAPH)
    assert run.status == "completed", run.errors
    made, inverted = run["make"].image.image_name, run["invert"].image.image_name
    assert keys_in(bucket) == {
        f"invokeai/images/{made}",
        f"invokeai/thumbnails/{Path(made).stem}.webp",
        f"invokeai/images/{inverted}",
        f"invokeai/thumbnails/{Path(inverted).stem}.webp",
    }
    assert {r.image_name for r in records_of(invokeai_invoker)} == {made, inverted}
    # the bytes in the bucket are the images the nodes made (the second was loaded back from S3)
    body = s3_client.get_object(Bucket=bucket, Key=f"invokeai/images/{inverted}")["Body"].read()
    with Image.open(io.BytesIO(body)) as png:
        assert png.size == (48, 32)
        assert png.getpixel((0, 0)) == (255, 255, 155)  # the inverse of (0, 0, 100)
        text = dict(png.text)  # type: ignore[attr-defined]
    assert text["invokeai_session_id"] == run.session.id
    assert text["invokeai_node_id"] == "invert"
    assert set(json.loads(text["invokeai_graph"])["nodes"]) == {"make", "invert"}
    head = s3_client.head_object(Bucket=bucket, Key=f"invokeai/images/{made}")
    assert head["ContentType"] == "image/png"
    assert head["Metadata"]["invokeai-session-id"] == run.session.id
    assert head["Metadata"]["invokeai-node-id"] == "make"
    assert json.loads(store.get_metadata(made)["invokeai-metadata"]) == {"width": 48, "note": "dégradé"}
    # deleting through the image service removes the record and both objects
    invokeai_invoker.services.image_service.delete(made)
    assert keys_in(bucket) == {f"invokeai/images/{inverted}", f"invokeai/thumbnails/{Path(inverted).stem}.webp"}


def test_the_store_is_closed_when_the_invoker_stops(
    nodes: None, invokeai_host: Any, invokeai_config: Any, bucket: str, keys_in: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopping the Invoker closes the boto3 client the store used (its connection pool), once."""
    from invokeai_core import Invoker

    invoker = Invoker.from_config(invokeai_config, invokeai_host).start()
    client = invoker.services.images.client
    closes: list[bool] = []
    real_close = client.close
    monkeypatch.setattr(client, "close", lambda: closes.append(True) or real_close())
    session = invoker.run_graph(GRAPH, timeout=60)
    assert session.status == "completed", session.errors_by_source()
    assert len(keys_in(bucket)) == 4 and closes == []  # used, and open while the Invoker runs
    invoker.stop()
    invoker.services.images.stop()  # a second stop closes nothing twice
    assert closes == [True]


# == failures ===========================================================================================
@pytest.fixture
def closed_port() -> int:
    return free_port()  # nothing listens there


def test_an_unreachable_endpoint_fails_the_node_and_writes_no_record(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any, closed_port: int, monkeypatch: Any
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    store = invokeai_invoker.services.images
    monkeypatch.setattr(store, "client", _client_for(store, endpoint_url=url))
    run = invokeai_run_graph(GRAPH)
    message = assert_failed_cleanly(run, invokeai_invoker, "S3ConnectionError", "unreachable", url, "after 2 attempts")
    assert "plugins.s3.endpoint_url" in message


@pytest.mark.parametrize("s3_settings", [{"bucket": "no-such-bucket-anywhere"}], indirect=True)
def test_a_bucket_that_does_not_exist_fails_the_node_and_writes_no_record(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any
) -> None:
    run = invokeai_run_graph(GRAPH)
    assert_failed_cleanly(
        run, invokeai_invoker, "S3RequestError", "S3 refused to store", "no-such-bucket-anywhere", "NoSuchBucket"
    )


def test_a_denied_request_fails_the_node_and_writes_no_record(
    nodes: None,
    invokeai_run_graph: Any,
    invokeai_invoker: Any,
    moto_iam: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a user of the store's IAM who may read the bucket but not write to it; its keys come from the
    # environment (the AWS chain), as a deployment's would
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_iam.extra["access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_iam.extra["secret_access_key"])
    store = invokeai_invoker.services.images
    monkeypatch.setattr(store, "client", _client_for(store, endpoint_url=moto_iam.url))
    monkeypatch.setattr(store, "bucket", moto_iam.extra["bucket"])
    run = invokeai_run_graph(GRAPH)
    message = assert_failed_cleanly(run, invokeai_invoker, "S3RequestError", "AccessDenied", "guarded-bucket")
    assert "permissions" in message
    assert store.list_names() == []  # reading is allowed: nothing was stored


def test_unknown_credentials_are_refused_clearly(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any, moto_iam: MotoServer, monkeypatch: Any
) -> None:
    store = invokeai_invoker.services.images
    monkeypatch.setattr(store, "client", _client_for(store, endpoint_url=moto_iam.url))  # keys "testing"
    monkeypatch.setattr(store, "bucket", moto_iam.extra["bucket"])
    run = invokeai_run_graph(GRAPH)
    message = assert_failed_cleanly(run, invokeai_invoker, "S3RequestError", "InvalidAccessKeyId")
    assert "AWS_ACCESS_KEY_ID" in message


def test_missing_credentials_fail_the_node_with_the_ways_to_give_them(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any, monkeypatch: Any
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    store = invokeai_invoker.services.images
    monkeypatch.setattr(store, "client", _client_for(store))
    run = invokeai_run_graph(GRAPH)
    assert_failed_cleanly(
        run, invokeai_invoker, "S3RequestError", "no usable AWS credentials", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"
    )


def _client_for(store: Any, **changes: Any) -> Any:
    """A client like the store's, built from its settings with `changes` (the environment as it is now)."""
    from invokeai_s3.storage import make_client

    return make_client(store.settings.model_copy(update=changes))


# == retries ============================================================================================
def test_transient_errors_are_retried(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any, moto_server: MotoServer, monkeypatch: Any
) -> None:
    store = invokeai_invoker.services.images
    with FlakyProxy(moto_server.port, fail_first=1) as proxy:
        monkeypatch.setattr(store, "client", _client_for(store, endpoint_url=proxy.url, max_attempts=2))
        run = invokeai_run_graph(GRAPH)
    assert run.status == "completed", run.errors
    # the first PUT was answered 503 SlowDown and sent again; every other request went through once:
    # 2 images x (PUT image, PUT thumbnail) + 1 GET (invert loads the first image) + the retry
    assert proxy.requests == 6
    assert proxy.methods[:2] == ["PUT", "PUT"]
    assert len(records_of(invokeai_invoker)) == 2


def test_retries_give_up_after_max_attempts(
    nodes: None, invokeai_run_graph: Any, invokeai_invoker: Any, moto_server: MotoServer, monkeypatch: Any
) -> None:
    store = invokeai_invoker.services.images
    with FlakyProxy(moto_server.port, fail_first=1000) as proxy:
        monkeypatch.setattr(store, "client", _client_for(store, endpoint_url=proxy.url, max_attempts=3))
        run = invokeai_run_graph(GRAPH)
    assert proxy.requests == 3  # the first attempt and two retries, then the error is final
    assert_failed_cleanly(run, invokeai_invoker, "S3RequestError", "SlowDown", "after 3 attempts", "max_attempts")


# == configuration errors ==============================================================================
def _build(invokeai_root: Path, invokeai_host: Any, s3: dict[str, Any] | None) -> Any:
    from conftest import write_config

    from invokeai_core import Invoker, load_config

    write_config(invokeai_root, s3, {"images": "s3"})
    return Invoker.from_config(load_config(root=invokeai_root, environ={}), invokeai_host)


def test_selecting_s3_without_a_bucket_is_one_clear_error(invokeai_root: Path, invokeai_host: Any) -> None:
    with pytest.raises(ConfigError, match=r"needs a bucket: set bucket in the \[plugins.s3\] table"):
        _build(invokeai_root, invokeai_host, None)


@pytest.mark.parametrize("key", ["aws_secret_access_key", "aws_access_key_id", "secret_key", "aws_session_token"])
def test_credentials_are_refused_in_the_configuration(invokeai_root: Path, invokeai_host: Any, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        _build(invokeai_root, invokeai_host, {"bucket": "abc", key: "s3cr3t"})
    message = str(e.value)
    assert f"'plugins.s3.{key}'" in message and "invokeai.toml" in message
    assert "never read from the configuration" in message and "AWS_ACCESS_KEY_ID" in message
    assert "s3cr3t" not in message


@pytest.mark.parametrize(
    ("settings", "phrase"),
    [
        ({"bucket": "abc", "buckt": "x"}, "unknown configuration key 'plugins.s3.buckt'"),
        ({"bucket": "ab"}, "'plugins.s3.bucket'"),
        ({"bucket": "abc", "addressing_style": "sideways"}, "'plugins.s3.addressing_style'"),
        ({"bucket": "abc", "urls": "public"}, "'plugins.s3.urls'"),
        ({"bucket": "abc", "endpoint_url": "127.0.0.1:9000"}, "http://host:port"),
        ({"bucket": "abc", "max_attempts": 0}, "'plugins.s3.max_attempts'"),
        ({"bucket": "abc", "prefix": "a/../b"}, "'plugins.s3.prefix'"),
    ],
)
def test_bad_settings_name_the_key_and_the_file(
    invokeai_root: Path, invokeai_host: Any, settings: dict[str, Any], phrase: str
) -> None:
    with pytest.raises(ConfigError) as e:
        _build(invokeai_root, invokeai_host, settings)
    assert phrase in str(e.value)
    assert str(invokeai_root / "invokeai.toml") in str(e.value)


def test_an_unknown_profile_is_a_configuration_error(invokeai_root: Path, invokeai_host: Any) -> None:
    with pytest.raises(
        ConfigError, match=r"profile \(nowhere\) could not be found \(plugins.s3.profile or AWS_PROFILE\)"
    ):
        _build(invokeai_root, invokeai_host, {"bucket": "abc", "profile": "nowhere"})


def test_settings_from_the_environment(invokeai_root: Path, moto_server: MotoServer, bucket: str) -> None:
    from invokeai_s3.settings import S3Settings

    from invokeai_core import load_config

    env = {
        "INVOKEAI_SERVICES__IMAGES": "s3",
        "INVOKEAI_PLUGINS__S3__BUCKET": bucket,
        "INVOKEAI_PLUGINS__S3__MAX_ATTEMPTS": "4",
        "INVOKEAI_PLUGINS__S3__ENDPOINT_URL": moto_server.url,
        "INVOKEAI_PLUGINS__S3__URLS": "presigned",
    }
    settings = S3Settings.from_config(load_config(root=invokeai_root, environ=env))
    assert (settings.bucket, settings.max_attempts, settings.urls) == (bucket, 4, "presigned")
    assert settings.endpoint_url == moto_server.url

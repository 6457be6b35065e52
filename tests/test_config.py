"""Configuration: defaults < invokeai.toml < INVOKEAI_* environment < overrides (CLI flags)."""

from __future__ import annotations

from pathlib import Path

import pytest

from invokeai_core.config import CONFIG_FILE_NAME, InvokeAIConfig, load_config
from invokeai_core.errors import ConfigError


def _write(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_FILE_NAME
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults(tmp_path: Path):
    config = load_config(root=tmp_path, environ={})
    assert isinstance(config, InvokeAIConfig)
    assert config.root == tmp_path
    assert config.outputs_dir == tmp_path / "outputs"
    assert (config.log_level, config.cache_size, config.objects_memory_items) == ("info", 512, 64)
    assert (config.queue_workers, config.max_queue_size) == (1, 10000)
    assert (config.queue_processor, config.queue_requeue_on_crash) == (False, False)
    assert config.db_file == tmp_path / "invokeai.db"
    assert config.services.selected() == {
        "images": "local",
        "image_records": "sqlite",
        "objects": "memory",
        "sessions": "sqlite",
        "queue": "sqlite",
        "events": "memory",
        "cache": "memory",
        "workflows": "sqlite",
    }
    assert config.plugins.block == []
    assert config.sources == {"root": "cli"}
    assert config.source_of("cache_size") == "default"


def test_precedence_file_env_overrides(tmp_path: Path):
    path = _write(tmp_path, 'cache_size = 10\nlog_level = "debug"\nqueue_workers = 3\nmax_queue_size = 7\n')
    env = {"INVOKEAI_CACHE_SIZE": "20", "INVOKEAI_QUEUE_WORKERS": "4"}
    config = load_config(root=tmp_path, environ=env, overrides={"cache_size": 30})
    assert config.cache_size == 30  # overrides beat env beat file
    assert config.queue_workers == 4  # env beats file
    assert config.log_level == "debug"  # file beats defaults
    assert config.max_queue_size == 7
    assert config.objects_memory_items == 64  # default
    assert config.sources["cache_size"] == "cli"
    assert config.sources["queue_workers"] == "env INVOKEAI_QUEUE_WORKERS"
    assert config.sources["log_level"] == f"file {path}"
    assert "objects_memory_items" not in config.sources
    assert config.source_of("objects_memory_items") == "default"

    only_file = load_config(root=tmp_path, environ={})
    assert (only_file.cache_size, only_file.queue_workers) == (10, 3)
    only_env = load_config(root=tmp_path, environ=env)
    assert only_env.cache_size == 20


def test_root_from_the_environment(tmp_path: Path):
    _write(tmp_path, "cache_size = 5\n")
    config = load_config(environ={"INVOKEAI_ROOT": str(tmp_path)})
    assert config.root == tmp_path
    assert config.cache_size == 5
    assert config.sources["root"] == "env INVOKEAI_ROOT"
    # root= (the CLI flag) beats the environment
    other = tmp_path / "other"
    assert load_config(root=other, environ={"INVOKEAI_ROOT": str(tmp_path)}).root == other


def test_root_as_an_override(tmp_path: Path):
    config = load_config(overrides={"root": str(tmp_path)}, environ={})
    assert config.root == tmp_path
    assert config.sources["root"] == "cli"


def test_root_cannot_be_set_in_the_roots_own_file(tmp_path: Path):
    _write(tmp_path, 'root = "/elsewhere"\n')
    with pytest.raises(ConfigError, match="'root'"):
        load_config(root=tmp_path, environ={})


def test_explicit_config_file(tmp_path: Path):
    other = tmp_path / "elsewhere" / "my.toml"
    other.parent.mkdir()
    other.write_text('root = "data"\ncache_size = 9\n', encoding="utf-8")
    config = load_config(config_file=other, environ={})
    assert config.root == (other.parent / "data").resolve()
    assert config.cache_size == 9
    assert config.sources["root"] == f"file {other}"
    via_env = load_config(environ={"INVOKEAI_CONFIG": str(other)})
    assert via_env.cache_size == 9
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.toml", environ={})


def test_nested_keys_from_env_and_file(tmp_path: Path):
    _write(tmp_path, '[services]\nimages = "s3"\nsessions = "sqlite"\n')
    config = load_config(root=tmp_path, environ={"INVOKEAI_SERVICES__IMAGES": "gcs"})
    assert config.services.images == "gcs"
    assert config.services.sessions == "sqlite"
    assert config.sources["services.images"] == "env INVOKEAI_SERVICES__IMAGES"
    config = load_config(root=tmp_path, environ={}, overrides={"services.queue": "redis"})
    assert config.services.queue == "redis"
    assert config.services.images == "s3"


def test_env_strings_stay_strings_for_string_settings(tmp_path: Path):
    # "1" parses as JSON 1, but an implementation name (or a log level) is text
    env = {"INVOKEAI_SERVICES__IMAGES": "1", "INVOKEAI_LOG_LEVEL": "null", "INVOKEAI_SERVICES__S_MODELS": "2"}
    config = load_config(root=tmp_path, environ=env)
    assert config.services.images == "1"
    assert config.log_level == "null"
    assert config.services.selected()["s_models"] == "2"
    config = load_config(root=tmp_path, environ={}, overrides={"services.images": 2})
    assert config.services.images == "2"


def test_env_structured_values(tmp_path: Path):
    config = load_config(root=tmp_path, environ={"INVOKEAI_PLUGINS__BLOCK": '["a", "b"]'})
    assert config.plugins.block == ["a", "b"]


def test_plugin_settings_tables(tmp_path: Path):
    _write(
        tmp_path,
        """
[plugins]
block = ["noisy"]

[plugins.s3]
bucket = "images"
region = "eu-west-1"
port = 9000

[plugins.s3.retry]
attempts = 3
""",
    )
    env = {"INVOKEAI_PLUGINS__S3__REGION": "us-east-1", "INVOKEAI_PLUGINS__OTHER__FLAG": "true"}
    config = load_config(root=tmp_path, environ=env)
    assert config.plugins.block == ["noisy"]
    assert config.plugin_settings("s3") == {
        "bucket": "images",
        "region": "us-east-1",
        "port": 9000,
        "retry": {"attempts": 3},
    }
    assert config.plugin_settings("other") == {"flag": True}
    assert config.plugin_settings("absent") == {}
    assert config.sources["plugins.s3.region"] == "env INVOKEAI_PLUGINS__S3__REGION"
    # a copy: editing it does not change the configuration
    config.plugin_settings("s3")["bucket"] = "changed"
    assert config.plugin_settings("s3")["bucket"] == "images"


def test_unknown_key_in_the_file(tmp_path: Path):
    path = _write(tmp_path, "cache_size = 1\ncahce_size = 2\n")
    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path, environ={})
    assert "unknown configuration key 'cahce_size'" in str(info.value)
    assert f"file {path}" in str(info.value)


def test_unknown_nested_key_in_the_file(tmp_path: Path):
    _write(tmp_path, "[queue]\nsize = 3\n")
    with pytest.raises(ConfigError, match=r"'queue\.size'|'queue'"):
        load_config(root=tmp_path, environ={})


def test_unknown_key_in_overrides(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path, environ={}, overrides={"no_such_setting": 1})
    assert "'no_such_setting'" in str(info.value)
    assert "(from cli)" in str(info.value)


def test_unknown_key_in_the_environment(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path, environ={"INVOKEAI_NO_SUCH_SETTING": "1"})
    assert "'no_such_setting'" in str(info.value)
    assert "INVOKEAI_NO_SUCH_SETTING" in str(info.value)


def test_non_config_environment_variables_are_ignored(tmp_path: Path):
    env = {"INVOKEAI_LOAD_PLUGINS": "a,b", "INVOKEAI_STRICT_PLUGINS": "1", "OTHER": "x"}
    assert load_config(root=tmp_path, environ=env).cache_size == 512


def test_sources_cannot_be_set(tmp_path: Path):
    with pytest.raises(ConfigError, match="sources"):
        load_config(root=tmp_path, environ={}, overrides={"sources": {}})


def test_bad_value_types_are_named_with_their_source(tmp_path: Path):
    path = _write(tmp_path, 'cache_size = "lots"\n')
    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path, environ={})
    message = str(info.value)
    assert "'cache_size'" in message
    assert f"file {path}" in message
    assert "integer" in message
    assert "'lots'" in message

    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path / "x", environ={"INVOKEAI_QUEUE_WORKERS": "0"})
    assert "'queue_workers'" in str(info.value)
    assert "env INVOKEAI_QUEUE_WORKERS" in str(info.value)

    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path / "x", environ={}, overrides={"plugins.block": ["ok", 3]})
    assert "'plugins.block.1'" in str(info.value)
    assert "(from cli)" in str(info.value)


def test_every_bad_value_is_reported(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        load_config(root=tmp_path, environ={}, overrides={"cache_size": -1, "queue_workers": "many"})
    assert "'cache_size'" in str(info.value) and "'queue_workers'" in str(info.value)


def test_broken_toml(tmp_path: Path):
    path = _write(tmp_path, "cache_size = \n")
    with pytest.raises(ConfigError, match="cannot read") as info:
        load_config(root=tmp_path, environ={})
    assert str(path) in str(info.value)


def test_secrets_are_masked_in_public_dict(tmp_path: Path):
    _write(
        tmp_path,
        """
[plugins.s3]
bucket = "images"
secret_access_key = "very-secret"
aws_access_key_id = "AKIA-ID"
session_token = "tok"
api_key = "k"
password = ""
""",
    )
    config = load_config(root=tmp_path, environ={"INVOKEAI_PLUGINS__WEB__ACCESS_TOKEN": "t0ken"})
    public = config.public_dict()
    s3 = public["plugins"]["s3"]
    assert s3["bucket"] == "images"
    assert s3["secret_access_key"] == "********"
    assert s3["aws_access_key_id"] == "********"
    assert s3["session_token"] == "********"
    assert s3["api_key"] == "********"
    assert s3["password"] == ""  # nothing to hide
    assert public["plugins"]["web"]["access_token"] == "********"
    assert public["cache_size"] == 512
    assert public["root"] == str(tmp_path)
    assert "sources" not in public
    text = repr(public)
    assert "very-secret" not in text and "t0ken" not in text
    # the real values stay available to the plugin
    assert config.plugin_settings("s3")["secret_access_key"] == "very-secret"


def test_validate_assignment(tmp_path: Path):
    config = load_config(root=tmp_path, environ={})
    config.cache_size = 3
    assert config.cache_size == 3
    with pytest.raises(ValueError):
        config.cache_size = -5


def test_a_plugin_table_validates_into_the_plugins_model_with_errors_naming_the_key(tmp_path) -> None:
    from pydantic import BaseModel, ConfigDict

    from invokeai_core.config import load_config
    from invokeai_core.errors import ConfigError

    class SunsetSettings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        steps: int = 4

    config = load_config(root=tmp_path, environ={"INVOKEAI_PLUGINS__SUNSET__STEPS": "9"})
    assert config.plugin_settings_as("sunset", SunsetSettings).steps == 9
    assert load_config(root=tmp_path, environ={}).plugin_settings_as("sunset", SunsetSettings).steps == 4
    bad = load_config(root=tmp_path, environ={"INVOKEAI_PLUGINS__SUNSET__STEPS": "many"})
    with pytest.raises(ConfigError, match=r"^plugins\.sunset\.steps: "):
        bad.plugin_settings_as("sunset", SunsetSettings)

"""Settings from .env and the environment."""

from __future__ import annotations

import pytest

from gusher.config import Settings, env_name, load_settings, parse_listen
from gusher.errors import ConfigError


def test_seed_names_and_environment_precedence(tmp_path) -> None:
    """.env supplies seed settings; the environment wins over it."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "REDIS_ADDR=10.0.0.5:6380\nAPI_LISTEN=:9000\nRETURN_SERVERINFO_INTERVAL=7\n"
        "GUSHER_MAX_PENDING_BYTES=1234\n"
    )
    settings = load_settings(str(env_file), environ={"API_LISTEN": ":9100"})
    assert settings.redis_url == "redis://10.0.0.5:6380/0"
    assert settings.api_listen == ":9100"
    assert settings.return_serverinfo_interval == "7" and settings.heartbeat_interval == 7.0
    assert settings.max_pending_bytes == 1234


def test_defaults_and_url_forms() -> None:
    """No configuration gives the seed's defaults; REDIS_ADDR may be a URL."""
    settings = load_settings("/nonexistent", environ={})
    assert settings == Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert load_settings("/nonexistent", {"REDIS_ADDR": "rediss://h:1/2"}).redis_url == "rediss://h:1/2"


def test_ignored_seed_rpc_settings_are_accepted(caplog) -> None:
    """MASTER_ADDR / REMOTE_LISTEN are accepted with one log line each."""
    with caplog.at_level("INFO"):
        load_settings("/nonexistent", {"MASTER_ADDR": "x:1", "REMOTE_LISTEN": ":2"})
    assert sum("ignored" in r.message for r in caplog.records) == 2


@pytest.mark.parametrize(
    "environ",
    [
        {"RETURN_SERVERINFO_INTERVAL": "soon"},
        {"RETURN_SERVERINFO_INTERVAL": "0"},
        {"API_LISTEN": "nowhere"},
        {"GUSHER_MAX_PENDING_BYTES": "-1"},
        {"GUSHER_WEBHOOK_TIMEOUT": "fast"},
    ],
)
def test_bad_values_raise_config_error(environ) -> None:
    """A malformed setting fails at start with the setting's name in the message."""
    with pytest.raises(ConfigError):
        load_settings("/nonexistent", environ=environ)


def test_listen_forms() -> None:
    """`:8000` means every interface."""
    assert parse_listen(":8000") == ("0.0.0.0", 8000)
    assert parse_listen("127.0.0.1:1") == ("127.0.0.1", 1)
    assert env_name("max_pending_bytes") == "GUSHER_MAX_PENDING_BYTES"
    assert env_name("redis_addr") == "REDIS_ADDR"


def test_env_example_documents_every_setting() -> None:
    """.env.example names every setting Settings has."""
    from dataclasses import fields
    from pathlib import Path

    text = (Path(__file__).parent.parent / ".env.example").read_text()
    assert [env_name(f.name) for f in fields(Settings) if env_name(f.name) not in text] == []


def test_the_redis_url_in_logs_hides_the_password() -> None:
    """Start-up lines name the Redis in use without its password."""
    assert Settings(redis_addr="redis://:s3cret@db:6379/1").redis_url_redacted == "redis://:***@db:6379/1"
    assert Settings(redis_addr="rediss://user:s3cret@db/0").redis_url_redacted == "rediss://user:***@db/0"
    assert Settings(redis_addr="db:6379").redis_url_redacted == "redis://db:6379/0"


def test_env_example_copied_to_env_keeps_the_embedded_redis() -> None:
    """Issue 15: `cp .env.example .env` (as its header suggests) leaves REDIS_ADDR unset, so
    `make run` still starts its embedded server; the servers' default stays 127.0.0.1:6379."""
    from pathlib import Path

    settings = load_settings(str(Path(__file__).parent.parent / ".env.example"), environ={})
    assert settings.redis_addr == "" and settings.redis_url == "redis://127.0.0.1:6379/0"

"""Settings: one frozen dataclass built from `.env` and the environment.

This is the only module that reads `os.environ`. The seed's names are kept
(`REDIS_ADDR`, `API_LISTEN`, `MASTER_API_LISTEN`, `RETURN_SERVERINFO_INTERVAL`);
every setting gusher adds is prefixed `GUSHER_` and documented in
`.env.example`. The environment wins over the `.env` file.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from dotenv import dotenv_values

from gusher.errors import ConfigError

log = logging.getLogger(__name__)

# Seed RPC settings: heartbeats now travel through Redis, so these are ignored.
IGNORED_SEED_SETTINGS = ("MASTER_ADDR", "REMOTE_LISTEN")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the defaults a production deployment gets."""

    redis_addr: str = ""
    api_listen: str = ":8000"
    master_api_listen: str = ":7999"
    return_serverinfo_interval: str = "5"
    slave_workers: int = 2
    master_workers: int = 2
    max_connections_per_worker: int = 15000
    webhook_timeout: float = 5.0
    webhook_max_body: int = 65536
    webhook_concurrency: int = 64
    webhook_concurrency_per_app: int = 32
    # Pusher-format webhooks to an app's events_url (issue 13): Pusher wants a 2xx within 4 s
    # and retries for 5 minutes; bounded per app (events), in all (bytes) and in flight.
    pusher_webhook_timeout: float = 4.0
    pusher_webhook_retry_seconds: float = 300.0
    pusher_webhook_batch: int = 20
    pusher_webhook_queue_per_app: int = 1000
    pusher_webhook_queue_bytes: int = 16 * 1024 * 1024
    pusher_webhook_concurrency: int = 16
    app_cache_seconds: float = 1.0
    redis_max_connections: int = 16
    max_message_size: int = 65536
    max_subscriptions_per_connection: int = 100
    max_commands_per_second: float = 20.0
    max_command_burst: int = 250
    max_pending_bytes: int = 1048576
    max_push_bytes: int = 1048576
    request_timeout: float = 10.0
    subscribe_timeout: float = 5.0
    command_concurrency: int = 64
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    close_timeout: float = 5.0
    public_ip: str = ""
    trusted_proxies: str = "127.0.0.1,::1"
    log_level: str = "info"
    log_format: str = "text"
    # Security (issue 6). The admin token guards /api/system/* and the listings;
    # repr=False keeps it out of any log line that prints the settings.
    admin_token: str = field(default="", repr=False)
    allow_bearer_secret: bool = False
    signature_tolerance: int = 300
    # Bounds of the ext push API.
    max_push_channels: int = 100
    max_batch_events: int = 100
    # History (issue 12): how many missed messages one subscribe may replay; how
    # long a channel's numbering (epoch, latest offset) outlives its last publish.
    max_recovered_messages: int = 300
    history_meta_ttl: int = 30 * 24 * 3600
    # Replicas that must hold a numbered message before it is published and acknowledged
    # (WAIT), and how long to wait for them: a failover then loses no message a client saw.
    history_replicas: int = 0
    history_replicas_timeout: float = 0.5
    # Pusher compatibility (issue 13): members of one presence channel (Pusher's limit is 100).
    presence_max_members: int = 100

    @property
    def redis_url(self) -> str:
        """`REDIS_ADDR` as a URL: `host:port` (seed) or a `redis://`/`rediss://` URL."""
        addr = self.redis_addr or "127.0.0.1:6379"
        if "://" in addr:
            return addr
        return f"redis://{addr}/0"

    @property
    def redis_url_redacted(self) -> str:
        """`redis_url` with any password replaced by `***`, for log lines."""
        parts = urllib.parse.urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    @property
    def trusted_proxy_set(self) -> frozenset[str]:
        """Peers whose `X-Forwarded-For` is believed (`GUSHER_TRUSTED_PROXIES`, comma-separated)."""
        return frozenset(p.strip() for p in self.trusted_proxies.split(",") if p.strip())

    @property
    def heartbeat_interval(self) -> float:
        """`RETURN_SERVERINFO_INTERVAL` in seconds (the seed keeps it a string)."""
        return float(self.return_serverinfo_interval)


# Setting name in the environment → dataclass field.
_SEED_NAMES = {
    "REDIS_ADDR": "redis_addr",
    "API_LISTEN": "api_listen",
    "MASTER_API_LISTEN": "master_api_listen",
    "RETURN_SERVERINFO_INTERVAL": "return_serverinfo_interval",
}


def env_name(field_name: str) -> str:
    """The environment variable that sets `field_name`."""
    for env, name in _SEED_NAMES.items():
        if name == field_name:
            return env
    return "GUSHER_" + field_name.upper()


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is bool:  # bool("false") is True: spell the accepted words out
        if raw.lower() in _TRUE + _FALSE:
            return raw.lower() in _TRUE
        raise ConfigError(f"{env_name(name)}={raw!r} is not a boolean (true/false)")
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{env_name(name)}={raw!r} is not a valid {kind.__name__}") from None
    if kind in (int, float) and value < 0:  # type: ignore[operator]
        raise ConfigError(f"{env_name(name)} must not be negative")
    return value


def parse_listen(listen: str) -> tuple[str, int]:
    """Split a listen address (`:8000` means every interface) into host and port."""
    host, _, port = listen.rpartition(":")
    try:
        return host or "0.0.0.0", int(port)
    except ValueError:
        raise ConfigError(f"listen address {listen!r} is not host:port or :port") from None


def load_settings(env_file: str | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from a `.env` file and the environment.

    Args:
        env_file: the `.env` path; default `GUSHER_ENV_FILE` or `./.env`.
        environ: the environment to read (default `os.environ`), for tests.

    Raises:
        ConfigError: a value cannot be converted or is out of range.
    """
    environ = os.environ if environ is None else environ
    path = env_file or environ.get("GUSHER_ENV_FILE") or ".env"
    values: dict[str, str] = {}
    if os.path.exists(path):
        values.update({k: v for k, v in dotenv_values(path).items() if v is not None})
    values.update(environ)
    for name in IGNORED_SEED_SETTINGS:
        if values.get(name):
            log.info("%s is a seed RPC setting; heartbeats go through Redis, so it is ignored", name)
    kwargs: dict[str, object] = {}
    for item in fields(Settings):
        raw = values.get(env_name(item.name))
        if raw is None or raw == "":
            continue
        kind = type(item.default)
        kwargs[item.name] = _convert(item.name, raw.strip(), kind)
    settings = Settings(**kwargs)  # type: ignore[arg-type]
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    parse_listen(settings.api_listen)
    parse_listen(settings.master_api_listen)
    try:
        interval = settings.heartbeat_interval
    except ValueError:
        raise ConfigError("RETURN_SERVERINFO_INTERVAL must be a number of seconds") from None
    if interval <= 0:
        raise ConfigError("RETURN_SERVERINFO_INTERVAL must be positive")
    if settings.max_message_size < 64:
        raise ConfigError("GUSHER_MAX_MESSAGE_SIZE must be at least 64 bytes")
    if settings.redis_max_connections < 1:
        raise ConfigError("GUSHER_REDIS_MAX_CONNECTIONS must be at least 1")
    if settings.log_format not in ("text", "json"):
        raise ConfigError("GUSHER_LOG_FORMAT must be text or json")
    if settings.command_concurrency < 1:
        raise ConfigError("GUSHER_COMMAND_CONCURRENCY must be at least 1")
    if settings.history_meta_ttl < 1:
        raise ConfigError("GUSHER_HISTORY_META_TTL must be at least 1 second")
    if settings.history_replicas and settings.history_replicas_timeout <= 0:
        raise ConfigError("GUSHER_HISTORY_REPLICAS_TIMEOUT must be positive")
    if settings.max_push_channels < 1 or settings.max_batch_events < 1:
        raise ConfigError("GUSHER_MAX_PUSH_CHANNELS and GUSHER_MAX_BATCH_EVENTS must be at least 1")
    if settings.pusher_webhook_batch < 1:
        raise ConfigError("GUSHER_PUSHER_WEBHOOK_BATCH must be at least 1")
    if settings.pusher_webhook_concurrency < 1:
        raise ConfigError("GUSHER_PUSHER_WEBHOOK_CONCURRENCY must be at least 1")

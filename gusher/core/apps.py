"""An app's record: the hash `{app_key}` whose `url` field is its webhook — pure.

The seed's app is a Redis hash with one field, `url`; gusher reads its other
fields (`secret`, `origins`, `jwt_key`) from the same hash. `parse_app` turns
the raw hash into an `AppConfig`; reading and caching it is the broker's job
(`gusher.broker.apps`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gusher.core.history import HistoryPolicy
from gusher.core.patterns import ChannelRules
from gusher.errors import UnknownApp
from gusher.keys import APP_URL_FIELD


@dataclass(frozen=True)
class AppConfig:
    """An app's hash, read in one HGETALL.

    Attributes:
        url: the auth webhook (seed; the app exists iff it is set).
        secret: signs pushes to the master and webhook calls; empty = open app (seed).
        origins: WebSocket `Origin`s allowed (exact or `*` globs); empty = any.
        jwt_key: HS256 secret or RS256 PEM public key; set = clients use JWTs, no webhook.
        has_secret_field: the hash has a `secret` field, even a blank one.
        history: what of each channel is kept (`history_size` and `history_ttl`), else None.
        pusher: Pusher clients may connect at `/app/{app_key}` (`pusher` = `1`/`true`): opt-in,
            since a Pusher client needs no webhook to subscribe to the app's public channels.
        app_id: Pusher's app id; when set, the Pusher HTTP API's `/apps/{app_id}` must equal it.
        client_events: Pusher client events (`client-*`) are relayed (`client_events` = `1`/`true`).
        subscription_count: Pusher clients are told each channel's subscriber count as it changes
            (`pusher_internal:subscription_count`; `subscription_count` = `1`/`true`).
        max_connections: the app's connections across every slave (`max_connections`); 0: no bound.
        events_url: where Pusher-format webhooks (channel_occupied, member_added, …) are POSTed.

    `secret` and `jwt_key` are decoded losslessly (`surrogateescape`): a binary
    secret keeps all of its bytes as HMAC key, where a lossy decode would turn
    every invalid byte into U+FFFD and leave almost nothing to guess.
    """

    key: str
    url: str
    secret: str = field(default="", repr=False)
    origins: tuple[str, ...] = ()
    jwt_key: str = field(default="", repr=False)
    has_secret_field: bool = False
    history: HistoryPolicy | None = None
    pusher: bool = False
    app_id: str = ""
    client_events: bool = False
    subscription_count: bool = False
    max_connections: int = 0
    events_url: str = ""

    @property
    def is_secured(self) -> bool:
        """Whether API calls for this app must prove they know its secret.

        A `secret` field that is present but blank (`HSET app secret "$UNSET"`)
        secures the app too, and then nothing can prove it (fail closed): the
        operator meant to close the app, and an empty HMAC key is public.
        """
        return bool(self.secret) or self.has_secret_field

    def allows_origin(self, origin: str | None) -> bool:
        """Whether a WebSocket handshake with this `Origin` header may proceed.

        Browsers always send `Origin` on WebSocket handshakes, and it is what a
        hijacking page cannot forge; a request without one is not a browser's
        (and a non-browser client could claim any origin anyway), so only a
        present, unlisted origin is refused.
        """
        if not self.origins or origin is None:
            return True
        return ChannelRules(self.origins).allows(origin.strip().lower().rstrip("/"))


def parse_app(app_key: str, fields: Mapping[Any, Any]) -> AppConfig:
    """Build an `AppConfig` from the raw hash.

    `origins` is a list separated by commas or spaces; origins compare lower-case.

    Raises:
        UnknownApp: the hash has no `url` field.
    """

    def text(name: str, errors: str = "replace") -> str:
        return fields.get(name.encode(), b"").decode("utf-8", errors).strip()

    url = text(APP_URL_FIELD)
    if not url:
        raise UnknownApp(f"unknown app_key {app_key[:100]!r}")
    origins = tuple(o.lower().rstrip("/") for o in text("origins").replace(",", " ").split())
    return AppConfig(
        app_key,
        url,
        text("secret", "surrogateescape"),
        origins,
        text("jwt_key", "surrogateescape"),
        has_secret_field=b"secret" in fields,
        history=history_policy(text("history_size"), text("history_ttl")),
        pusher=text("pusher").lower() in _TRUE,
        app_id=text("app_id"),
        client_events=text("client_events").lower() in _TRUE,
        subscription_count=text("subscription_count").lower() in _TRUE,
        max_connections=int(text("max_connections")) if is_positive_whole(text("max_connections")) else 0,
        events_url=text("events_url"),
    )


_TRUE = ("1", "true", "yes", "on")


MAX_HISTORY_SIZE = 100_000


def is_positive_whole(text: str) -> bool:
    """Whether a hash field holds a whole number ≥ 1 in ASCII digits (`"²"` is a digit to `isdigit`)."""
    return text.isascii() and text.isdigit() and int(text) >= 1


def history_policy(size: str, ttl: str) -> HistoryPolicy | None:
    """The app's history when both fields are whole numbers ≥ 1 (SPEC), else None (the seed's behaviour).

    `history_size` is capped at `MAX_HISTORY_SIZE` messages per channel.
    """
    if not (is_positive_whole(size) and is_positive_whole(ttl)):
        return None
    return HistoryPolicy(min(int(size), MAX_HISTORY_SIZE), int(ttl))

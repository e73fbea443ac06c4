"""Messages the slaves act on before (or instead of) delivering them: the hub's controls.

- `change_channels`: a user's allowed channels change at runtime (the master's
  `users/{user_id}/channels` routes), on every connection of the user here;
- `terminate`: every connection of a user closes (Pusher's
  `terminate_connections`; 4009 to pusher-js, 1008 to gusher clients);
- `to_sockets`: a push to one socket travels on its worker's key and reaches
  that connection only, if it is of the app the push names.

They run in the subscriber's greenlet, as the rest of the fan-out does.
"""

from __future__ import annotations

from typing import Protocol

from gusher.core.identity import MAX_ALLOWED_CHANNELS, Identity
from gusher.core.metrics import Metrics
from gusher.core.publication import Publication
from gusher.core.registry import Registry
from gusher.edge.connection import Connection
from gusher.edge.session import Session
from gusher.keys import MAX_NAME_LENGTH
from gusher.wire.base import ClientProtocol, Disconnect


class Hub(Protocol):
    """What the controls need of the worker's hub (gusher.edge.hub.Hub)."""

    sessions: dict[Connection, Session]
    registries: dict[ClientProtocol, Registry[Connection]]
    metrics: Metrics

    def unsubscribe(self, session: Session, channel: str) -> bool:
        """Unsubscribe `session` from `channel`."""

    def connection(self, number: int) -> Connection | None:
        """This worker's connection with socket number `number`."""


def terminate(hub: Hub, key: str) -> None:
    """Close every connection of a user here (Pusher's terminate_connections: 4009 to pusher-js)."""
    for registry in list(hub.registries.values()):
        for conn in registry.subscribers(key):
            session = hub.sessions.get(conn)
            if session is not None and session.is_open:
                session.disconnect(Disconnect.TERMINATED)


def change_channels(hub: Hub, key: str, publication: Publication) -> None:
    """A user's allowed channels change on every connection of theirs here; each is told.

    `data` is `{"channels": [...], "mode": "add" | "replace"}`. With
    `replace`, subscriptions to channels no longer allowed end; the event
    each connection receives lists its allowed channels and those.
    """
    data = publication.data if isinstance(publication.data, dict) else {}
    channels, mode = data.get("channels"), data.get("mode")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        return  # not from the master (a raw PUBLISH): nothing to apply
    channels = [c for c in channels if c and len(c) <= MAX_NAME_LENGTH]
    for registry in list(hub.registries.values()):
        for conn in registry.subscribers(key):
            session = hub.sessions.get(conn)
            if session is not None and session.is_open:
                _apply_channels(hub, session, channels, mode == "replace", publication)


def _apply_channels(
    hub: Hub, session: Session, channels: list[str], replace: bool, publication: Publication
) -> None:
    allowed = list(dict.fromkeys(channels if replace else [*session.identity.channels, *channels]))
    if len(allowed) > MAX_ALLOWED_CHANNELS:  # the newest win; what falls off is revoked
        allowed, replace = allowed[-MAX_ALLOWED_CHANNELS:], True
    session.identity = Identity(session.identity.user_id, tuple(allowed))
    dropped = []
    if replace:
        prefix = f"{session.app_key}@"
        for subscribed in hub.registries[session.protocol].keys_of(session.conn):
            channel = subscribed[len(prefix) :] if subscribed.startswith(prefix) else ""
            if channel and not session.identity.allows(channel):
                hub.unsubscribe(session, channel)
                dropped.append(channel)
    told = {"channels": list(session.identity.channels), "unsubscribed": dropped}
    session.conn.send(
        session.protocol.publication(Publication.create(publication.channel, publication.event, told))
    )
    hub.metrics.deliveries += 1


def to_sockets(hub: Hub, publications: list[Publication]) -> None:
    """Pushes to one socket of this worker: to it alone, if it is of the app the push names."""
    for publication in publications:
        app_key, _, number = publication.socket.partition("@")
        conn = hub.connection(int(number)) if number.isdigit() and len(number) < 20 else None
        session = hub.sessions.get(conn) if conn is not None else None
        if session is None or session.app_key != app_key or not session.is_open:
            continue  # gone, or not the app's: a push never crosses apps
        message = Publication.create(publication.channel, publication.event, publication.data)
        session.conn.send(session.protocol.publication(message))
        hub.metrics.deliveries += 1

"""Who is online: each slave worker's snapshot in the broker, merged by the master.

Every slave worker writes, once per heartbeat interval, one report (its
worker id) per app it holds connections of: its channels with their
subscriber counts and user ids, and its users with their connection counts.
Each report carries `expires_at` (now + three intervals) and the broker
expires it with it, so the users of a crashed slave vanish within three
intervals; a live worker deletes its reports of apps it no longer serves, and
a clean stop deletes all of them at once.

`snapshot` and `merge` are pure; `write`, `read` and `Presence` do the I/O.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import gevent
import orjson

from gusher.broker.base import StatusStore
from gusher.keys import is_internal, is_targetable_user, split_pubsub_channel
from gusher.ops.periodic import Periodic

log = logging.getLogger(__name__)

DEAD_AFTER_INTERVALS = 3

Snapshot = dict[str, dict[str, Any]]  # app_key → {"channels": {...}, "users": {...}}

_ITEMS_PER_PAUSE = 2000


class PresenceSource(Protocol):
    """What a snapshot reads of a worker (its hub)."""

    def online_users(self) -> list[tuple[str, str]]:
        """(app_key, user_id) of each open connection, as a new list."""

    def subscribed_keys(self) -> list[str]:
        """Every pub/sub key with a local subscriber, as a new list."""

    def subscriber_users(self, key: str) -> tuple[int, list[str]]:
        """How many local connections receive `key`, and their user ids."""


def snapshot(source: PresenceSource, pause: Callable[[], None] = lambda: None) -> Snapshot:
    """This worker's presence, per app — pure but for `pause`.

    Args:
        source: the worker's hub (read, never changed).
        pause: called every few thousand items; the worker passes a yield to
            the event loop so a snapshot of 15k clients never delays a
            fan-out (it works on copies, so changes meanwhile are harmless).

    Returns:
        `{app_key: {"channels": {channel: [subscriptions, [user ids]]},
                    "users": {user_id: connections}, "connections": n}}`
    """
    apps: Snapshot = {}
    for index, (app_key, user_id) in enumerate(source.online_users()):
        if index % _ITEMS_PER_PAUSE == _ITEMS_PER_PAUSE - 1:
            pause()
        app = apps.setdefault(app_key, {"channels": {}, "users": {}, "connections": 0})
        app["connections"] += 1
        if is_targetable_user(user_id):
            app["users"][user_id] = app["users"].get(user_id, 0) + 1
    for index, key in enumerate(source.subscribed_keys()):
        if index % _ITEMS_PER_PAUSE == _ITEMS_PER_PAUSE - 1:
            pause()
        if is_internal(key):
            continue
        app_key, channel = split_pubsub_channel(key)
        count, users = source.subscriber_users(key)
        app = apps.setdefault(app_key, {"channels": {}, "users": {}, "connections": 0})
        app["channels"][channel] = [count, sorted({u for u in users if is_targetable_user(u)})]
    return apps


@dataclass
class AppPresence:
    """One app's presence merged over every live worker."""

    channels: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    connections: int = 0  # every open connection, anonymous ones too (an app's quota)


def merge(fields: Mapping[Any, Any], now: float, skip: str = "") -> tuple[AppPresence, list[bytes]]:
    """Merge the workers' snapshots of one app (all but worker `skip`'s) — pure.

    Returns:
        The merged presence and the fields that expired (dead workers), to prune.
    """
    merged = AppPresence()
    dead = []
    for worker, raw in fields.items():
        if skip and (worker.decode("utf-8", "replace") if isinstance(worker, bytes) else str(worker)) == skip:
            continue
        try:
            report = orjson.loads(raw)
            fresh = float(report["expires_at"]) > now
            channels = [
                (str(c), int(n), {str(u) for u in users}) for c, (n, users) in report["channels"].items()
            ]
            users = [(str(u), int(n)) for u, n in report["users"].items()]
            connections = int(report.get("connections", 0))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            fresh = False  # unreadable: pruned like a dead worker, never a 500 for the listing
        if not fresh:
            dead.append(worker)
            continue
        for channel, count, names in channels:
            total, everyone = merged.channels.get(channel, (0, set()))
            merged.channels[channel] = (total + count, everyone | names)
        for user_id, count in users:
            merged.users[user_id] = merged.users.get(user_id, 0) + count
        merged.connections += connections
    return merged, dead


def write(
    status: StatusStore, worker_id: str, snap: Snapshot, now: float, ttl: float, previous: Iterable[str] = ()
) -> set[str]:
    """Store `snap` under `worker_id`; drop this worker's reports of apps it left.

    Returns:
        The apps written, to pass as `previous` next time.
    """
    reports = {
        app_key: orjson.dumps({"expires_at": now + ttl, **presence}) for app_key, presence in snap.items()
    }
    status.write_presence(worker_id, reports, max(1, int(ttl) + 1), set(previous) - snap.keys())
    return set(snap)


def read(status: StatusStore, app_key: str) -> AppPresence:
    """The merged presence of `app_key`; expired workers' reports are pruned."""
    merged, dead = merge(status.presence_reports(app_key), time.time())
    status.delete_presence_reports(app_key, dead)
    return merged


class Presence:
    """Writes one slave worker's presence every heartbeat interval."""

    def __init__(
        self, interval: float, status: StatusStore, source: PresenceSource, worker_id: str = ""
    ) -> None:
        self.interval = interval
        self.status = status
        self.source = source
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._apps: set[str] = set()
        self.loop = Periodic("presence write", interval, self.beat)

    def beat(self) -> None:
        """Write this worker's snapshot now (raises `BackendUnavailable` when Redis is down)."""
        snap = snapshot(self.source, pause=lambda: gevent.sleep(0))
        self._apps = write(
            self.status, self.worker_id, snap, time.time(), self.interval * DEAD_AFTER_INTERVALS, self._apps
        )

    def remove(self) -> None:
        """Delete this worker's reports at once (clean stop)."""
        try:
            write(self.status, self.worker_id, {}, time.time(), 0, self._apps)
            self._apps = set()
        except Exception as exc:
            log.warning("could not remove presence of %s: %s", self.worker_id, exc)

    def start(self) -> None:
        """Start the loop (idempotent)."""
        self.loop.start()

    def stop(self) -> None:
        """Stop the loop and remove this worker's presence."""
        self.loop.stop()
        self.remove()

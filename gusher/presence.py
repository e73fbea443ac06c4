"""Who is online: each slave worker's snapshot in Redis, merged by the master.

Every slave worker writes, once per heartbeat interval, one field (its worker
id) of the hash `gusher:presence:{app_key}` for each app it holds connections
of: its channels with their subscriber counts and user ids, and its users
with their connection counts. Each snapshot carries `expires_at` (now + three
intervals) and the hash expires with it, so the users of a crashed slave
vanish within three intervals; a live worker deletes the fields of apps it no
longer serves, and a clean stop deletes all of its fields at once.

`snapshot` and `merge` are pure; `write`, `read` and `Presence` do the I/O.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import orjson
import redis

from gusher.apps import backend
from gusher.connection import OPEN
from gusher.keys import is_internal, is_targetable_user, presence_key, split_pubsub_channel

log = logging.getLogger(__name__)

DEAD_AFTER_INTERVALS = 3

Snapshot = dict[str, dict[str, Any]]  # app_key → {"channels": {...}, "users": {...}}


_ITEMS_PER_PAUSE = 2000


def snapshot(hub: Any, pause: Callable[[], None] = lambda: None) -> Snapshot:
    """This worker's presence, per app — pure but for `pause`.

    Args:
        hub: the worker's hub (connections and registry are read, never changed).
        pause: called every few thousand items; the worker passes a yield to
            the event loop so a snapshot of 15k clients never delays a
            fan-out (it works on copies, so changes meanwhile are harmless).

    Returns:
        `{app_key: {"channels": {channel: [subscriptions, [user ids]]},
                    "users": {user_id: connections}}}`
    """
    apps: Snapshot = {}
    for index, conn in enumerate(list(hub.connections)):
        if index % _ITEMS_PER_PAUSE == _ITEMS_PER_PAUSE - 1:
            pause()
        if conn.state != OPEN:  # a closing connection is already gone for its user
            continue
        app = apps.setdefault(conn.app_key, {"channels": {}, "users": {}})
        user_id = conn.identity.user_id
        if is_targetable_user(user_id):
            app["users"][user_id] = app["users"].get(user_id, 0) + 1
    for index, key in enumerate(hub.registry.channels()):  # a copy: pausing is safe
        if index % _ITEMS_PER_PAUSE == _ITEMS_PER_PAUSE - 1:
            pause()
        if is_internal(key):
            continue
        app_key, channel = split_pubsub_channel(key)
        subscribers = hub.registry.subscribers(key)
        users = sorted({c.identity.user_id for c in subscribers if is_targetable_user(c.identity.user_id)})
        app = apps.setdefault(app_key, {"channels": {}, "users": {}})
        app["channels"][channel] = [len(subscribers), users]
    return apps


@dataclass
class AppPresence:
    """One app's presence merged over every live worker."""

    channels: dict[str, tuple[int, set[str]]] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)


def merge(fields: Mapping[Any, Any], now: float) -> tuple[AppPresence, list[bytes]]:
    """Merge the workers' snapshots of one app — pure.

    Returns:
        The merged presence and the fields that expired (dead workers), to prune.
    """
    merged = AppPresence()
    dead = []
    for worker, raw in fields.items():
        try:
            report = orjson.loads(raw)
            fresh = float(report["expires_at"]) > now
            channels = [
                (str(c), int(n), {str(u) for u in users}) for c, (n, users) in report["channels"].items()
            ]
            users = [(str(u), int(n)) for u, n in report["users"].items()]
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            fresh = False  # unreadable: pruned like a dead worker, never a 500 for the listing
        if not fresh:
            dead.append(worker)
            continue
        for channel, count, names in channels:
            total, everyone = merged.channels.get(channel, (0, set()))
            merged.channels[channel] = (total + count, everyone | names)
        for user_id, connections in users:
            merged.users[user_id] = merged.users.get(user_id, 0) + connections
    return merged, dead


def write(
    client: redis.Redis, worker_id: str, snap: Snapshot, now: float, ttl: float, previous: Iterable[str] = ()
) -> set[str]:
    """Store `snap` under `worker_id`; drop this worker's fields of apps it left.

    Returns:
        The apps written, to pass as `previous` next time.
    """
    with backend():
        pipe = client.pipeline(transaction=False)
        for app_key, presence in snap.items():
            key = presence_key(app_key)
            pipe.hset(key, worker_id, orjson.dumps({"expires_at": now + ttl, **presence}))
            pipe.expire(key, max(1, int(ttl) + 1))
        for app_key in set(previous) - snap.keys():
            pipe.hdel(presence_key(app_key), worker_id)
        pipe.execute()
    return set(snap)


def read(client: redis.Redis, app_key: str) -> AppPresence:
    """The merged presence of `app_key`; expired workers' fields are pruned."""
    key = presence_key(app_key)
    with backend():
        merged, dead = merge(client.hgetall(key), time.time())
        if dead:
            client.hdel(key, *dead)
    return merged


class Presence:
    """Writes one slave worker's presence every heartbeat interval."""

    def __init__(self, interval: float, client: redis.Redis, hub: Any, worker_id: str = "") -> None:
        self.interval = interval
        self.client = client
        self.hub = hub
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._apps: set[str] = set()
        self.greenlet: gevent.Greenlet | None = None

    def beat(self) -> None:
        """Write this worker's snapshot now (raises `BackendUnavailable` when Redis is down)."""
        snap = snapshot(self.hub, pause=lambda: gevent.sleep(0))
        self._apps = write(
            self.client, self.worker_id, snap, time.time(), self.interval * DEAD_AFTER_INTERVALS, self._apps
        )

    def remove(self) -> None:
        """Delete this worker's fields at once (clean stop)."""
        try:
            write(self.client, self.worker_id, {}, time.time(), 0, self._apps)
            self._apps = set()
        except Exception as exc:
            log.warning("could not remove presence of %s: %s", self.worker_id, exc)

    def start(self) -> None:
        """Spawn the loop (idempotent)."""
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """Stop the loop and remove this worker's presence."""
        if self.greenlet is not None:
            self.greenlet.kill(block=False)
            self.greenlet = None
        self.remove()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:  # Redis down or a bug: say so each beat, keep going
                log.warning("presence write failed: %s", exc)
            gevent.sleep(self.interval)

"""What gusher relies on from its broker: the interfaces every engine implements.

A broker carries Publications from any master to every slave worker that
has subscribers on their channel, and keeps gusher's records (apps, slave
heartbeats, presence). The single-Redis engine is `standalone.RedisBroker`,
the Redis Cluster engine `cluster.ClusterBroker` (sharded pub/sub, one
connection per primary: `cluster_subscriber`), the Sentinel engine
`sentinel.SentinelBroker` (the single-Redis engine on the primary Sentinel
names); they implement the same interfaces, and nothing above this
package changes. A fake broker in the tests implements `Subscriber` to
drive a hub without Redis.

Guarantees every `Subscriber` gives its handler (per worker):
- one broker subscription per key, however many local subscribers it has:
  the hub calls `want` for its first subscriber and `release` after its last;
- `on_ready(key)` each time a subscription to `key` takes effect (after
  `want`, and again after every reconnect), before any publication of that
  key received after it is handed on: a client told `subscribed` after
  `on_ready` receives every later message;
- publications are handed to `on_publications` in the order the broker sent
  them, in batches of what was already waiting (a burst is one batch, which
  lets the hub coalesce writes); each payload is parsed once per worker;
- delivery is at most once: what is published while the subscriber is
  disconnected is lost (pub/sub keeps nothing); it reconnects by itself,
  with capped and jittered backoff, and subscribes everything wanted again.
  Channels of apps with history get their messages numbered (`HistoryStore`),
  so what pub/sub dropped can be read back.

Every method that talks to the broker raises `BackendUnavailable` when it
cannot be reached, never a library's own error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from gusher.core.apps import AppConfig
from gusher.core.history import ChannelHistory, HistoryPolicy
from gusher.core.metrics import Metrics
from gusher.core.publication import Routed

PublicationBatch = list[Routed]


class SubscriberHandler(Protocol):
    """What a subscriber calls; the hub implements it. Both run in the subscriber's greenlet."""

    def on_publications(self, batch: PublicationBatch) -> None:
        """Deliver a batch of publications, in the order received."""

    def on_ready(self, key: str) -> None:
        """The subscription to `key` took effect."""


class Subscriber(Protocol):
    """One worker's subscriptions, kept equal to what its clients want."""

    @property
    def connected(self) -> bool:
        """Whether the subscriber is connected to the broker now."""

    @property
    def subscription_count(self) -> int:
        """Keys this worker holds subscribed in the broker now."""

    def want(self, key: str) -> bool:
        """Make sure `key` is subscribed; True if it already is (no `on_ready` follows)."""

    def release(self, key: str) -> None:
        """No local client wants `key` any more: unsubscribe it soon."""

    def start(self, handler: SubscriberHandler) -> None:
        """Connect and keep connected, in greenlets of its own; tell `handler` what arrives."""

    def stop(self) -> None:
        """Disconnect and end those greenlets."""

    def live_greenlets(self) -> int:
        """How many greenlets it runs (for the heartbeat's count)."""


class AppStore(Protocol):
    """App records: the hash `{app_key}` (gusher.core.apps)."""

    def load(self, app_key: str) -> AppConfig:
        """The app's whole record, read in one round trip.

        Raises:
            InvalidName: the key cannot name an app.
            UnknownApp: the app has no `url` field.
        """

    def scan(self, limit: int = 10000) -> list[AppConfig]:
        """Apps found by scanning at most `limit` keys, sorted by key."""

    def save(self, app_key: str, fields: Mapping[str, str]) -> None:
        """Set fields of the app's hash (creating it)."""

    def forget(self, app_key: str, fields: Iterable[str] = ()) -> bool:
        """Delete the given fields of the app's hash, or the whole app; False if there was nothing."""


class StatusStore(Protocol):
    """Heartbeats of slaves and masters, and presence snapshots (gusher.ops): opaque reports with expiries."""

    def write_heartbeat(
        self, server_id: str, worker_id: str, report: bytes, ttl: int, now: float, role: str = "slave"
    ) -> None:
        """Store one worker's report; the server stays listed for `ttl` seconds."""

    def heartbeat_reports(self, server_id: str, role: str = "slave") -> Mapping[bytes, bytes]:
        """Every worker's report of one server."""

    def delete_heartbeat_reports(self, server_id: str, workers: Iterable[bytes], role: str = "slave") -> None:
        """Drop the reports of workers known to be dead."""

    def remove_heartbeat(self, server_id: str, worker_id: str, role: str = "slave") -> None:
        """Drop one worker's report; the server is unlisted when it was the last."""

    def live_servers(self, since: float, role: str = "slave") -> dict[str, Mapping[bytes, bytes]]:
        """Every server of `role` that reported after `since` (unix time), with its workers' reports."""

    def write_presence(
        self, worker_id: str, reports: Mapping[str, bytes], ttl: int, gone: Iterable[str]
    ) -> None:
        """Store one worker's presence report per app; drop its reports of the apps in `gone`."""

    def presence_reports(self, app_key: str) -> Mapping[bytes, bytes]:
        """Every worker's presence report of one app."""

    def delete_presence_reports(self, app_key: str, workers: Iterable[bytes]) -> None:
        """Drop the presence reports of workers known to be dead."""


class HistoryStore(Protocol):
    """Channel histories (gusher.broker.history): numbered, kept and published in one atomic step."""

    def publish(self, items: Sequence[Routed], policy: HistoryPolicy) -> list[tuple[int, str]]:
        """Number, keep and publish each item in order, all or none; (offset, epoch) of each."""

    def read(self, key: str, since: int, limit: int, policy: HistoryPolicy) -> ChannelHistory:
        """The channel's epoch (created when missing), latest offset, and up to `limit` kept
        messages with an offset above `since`, oldest first."""


class MemberStore(Protocol):
    """Pusher presence members (gusher.broker.members): exact across slaves, swept after a crash."""

    def join(
        self,
        key: str,
        socket_id: str,
        worker: int,
        user_id: str,
        user_info: bytes,
        max_members: int,
        added: bytes,
    ) -> tuple[dict[str, Any], bool] | None:
        """Make `socket_id` a member of the presence channel `key`: its members, and whether it
        is the user's first connection (then `added`, the `member_added` payload, is published);
        None when the channel is full."""

    def leave(self, key: str, socket_id: str, worker: int) -> str:
        """`socket_id` leaves `key`: the user id when it was the user's last connection
        (`member_removed` is published), else ""."""

    def members(self, key: str) -> dict[str, Any]:
        """The members of presence channel `key`: user id → user info."""

    def count(self, key: str) -> int:
        """How many users are members of presence channel `key`."""

    def keep_alive(self, worker: int, ttl: float) -> bool:
        """Refresh the worker's liveness for `ttl` seconds; False when it had lapsed."""

    def sweep(self, skip: int) -> list[tuple[str, str]]:
        """Remove the members of every other worker whose liveness lapsed; (key, user id) of
        each user that left for good."""

    def stop(self, worker: int, joined: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """A clean stop: each (key, socket id) leaves and the worker's records go; (key, user
        id) of each user that left for good."""


class OccupancyStore(Protocol):
    """Which channels have a subscriber on some slave worker (gusher.broker.occupancy)."""

    def occupy(self, key: str, worker: int) -> bool:
        """`worker` has a subscriber on `key`; True when no worker anywhere had one."""

    def vacate(self, key: str, worker: int) -> bool:
        """`worker` has none any more; True when it was the last worker anywhere."""

    def sweep(self, skip: int) -> list[str]:
        """Vacate the keys of every other worker whose liveness lapsed; the keys left vacant."""

    def restore(self, worker: int, keys: Iterable[str]) -> list[str]:
        """Occupy `keys` again after this worker's liveness lapsed; those that became occupied."""

    def stop(self, worker: int, keys: Iterable[str]) -> list[str]:
        """A clean stop: vacate `keys` and the worker's record; the keys left vacant."""


class SubscriptionCountStore(Protocol):
    """Channels' subscribers counted across slave workers (gusher.broker.subscription_counts)."""

    def update(self, key: str, worker: int, count: int) -> int | None:
        """`worker` has `count` subscribers on `key`: the new total (published), or None if unchanged."""

    def total(self, key: str) -> int:
        """The channel's subscribers on every slave worker."""

    def sweep(self, skip: int) -> int:
        """Zero the counts of every other worker whose liveness lapsed; how many keys."""

    def stop(self, worker: int, keys: Iterable[str] = ()) -> None:
        """A clean stop: the worker's counts go."""


class Broker(Protocol):
    """One process's way to the broker: publish, subscribe, and gusher's records."""

    @property
    def apps(self) -> AppStore:
        """App records."""

    @property
    def status(self) -> StatusStore:
        """Heartbeats and presence."""

    @property
    def history(self) -> HistoryStore:
        """Channel histories."""

    @property
    def members(self) -> MemberStore:
        """Pusher presence channels' members."""

    @property
    def occupancy(self) -> OccupancyStore:
        """Channel occupancy across slave workers (Pusher webhooks)."""

    @property
    def subscription_counts(self) -> SubscriptionCountStore:
        """Channels' subscribers across slave workers (Pusher's subscription_count)."""

    def cached(self, key: str) -> bytes | None:
        """The last payload published on a Pusher cache channel's key, if it is still kept."""

    def publish(self, items: Sequence[Routed], history: HistoryPolicy | None = None) -> list[tuple[int, str]]:
        """Publish each publication on its key, in order; several at once are all or nothing.

        With `history` (the app's policy), each is numbered and kept too, and
        its (offset, epoch) returned; without it, nothing is returned. The
        last message of a Pusher cache channel (`gusher.core.pusher.is_cache`)
        is kept for `cached`.
        """

    def live_keys(self, prefix: str) -> list[str]:
        """Every key starting with `prefix` that some subscriber holds now (any server, any worker)."""

    def subscriber(self, metrics: Metrics, ping_every: float) -> Subscriber:
        """A new subscriber for this worker (not started; `want` may be called before `start`)."""

    def ping(self) -> None:
        """Return when the broker answers; raise `BackendUnavailable` otherwise."""

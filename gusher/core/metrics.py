"""The counters, gauges and histograms of one process, in one place — pure.

Every part of a worker that counts something increments an attribute of the
worker's `Metrics` (a plain `+= n`, ~30 ns: the fan-out counts once per
channel and batch, never once per recipient). Gauges are read when asked for,
from the objects that own the state (`add_gauge`). Durations go into
fixed-bucket histograms (`observe`, ~1 µs: once per handshake or push, never
per delivery). Readers take a `snapshot()`, a flat JSON-able dict: the
heartbeat publishes it, and `/metrics` sums the snapshots of a role's workers
(`gusher.ops.exposition`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable

# name → what it counts; the order is the order of `snapshot()`.
COUNTERS = {
    "messages_in": "messages received from the broker",
    "deliveries": "messages written to clients (one per recipient)",
    "invalid_messages": "messages from the broker dropped because they are not UTF-8",
    "slow_consumer_drops": "clients closed because their output backlog overflowed",
    "ping_timeouts": "clients closed because they did not answer a ping",
    "rate_limited": "clients closed for sending commands too fast",
    "protocol_errors": "clients closed for breaking RFC 6455 or a message bound",
    "slow_requests": "HTTP requests cut because their headers or body did not arrive in time",
    "redis_reconnects": "times the pub/sub connection to the broker was re-established",
    "redis_slot_map_reads": "times a worker read a Redis Cluster's slot map again (a move, a failover)",
    "redis_channels_moved": "channels a worker resubscribed on another Redis Cluster primary",
    "recoveries": "resuming subscribes (history) that got every missed message",
    "recoveries_failed": "resuming subscribes (history) told recovered: false",
    "history_catchups": "history channels read back after a pub/sub gap or reconnect",
    "pusher_webhook_events_sent": "Pusher webhook events delivered (their POST answered 2xx)",
    "pusher_webhook_failures": "Pusher webhook POSTs that failed (connection, timeout, non-2xx)",
    "pusher_webhook_events_expired": "Pusher webhook events given up: retried too long, or held at stop",
    "pusher_webhook_events_dropped": "Pusher webhook events dropped: a queue was full, or unencodable",
    "pusher_webhook_events_skipped": "Pusher webhook events not queued: the app has no events_url or secret",
    "connections_total": "connections accepted since start",
    "handshakes_refused_request": "handshakes refused as malformed (400, 426)",
    "handshakes_refused_auth": "handshakes refused: no auth, unknown app, token or webhook said no (401)",
    "handshakes_refused_origin": "handshakes refused for their Origin (403)",
    "handshakes_refused_unavailable": "handshakes refused: worker full or Redis down (503)",
    "pushes": "push requests the master answered 200",
    "pushes_refused": "push requests the master refused (4xx)",
    "publications": "messages the master published",
    "client_events": "Pusher client events relayed",
    "handshakes_refused_pusher": "Pusher connections refused with a 4xxx close (unknown app, full, …)",
}

# Upper bounds (seconds) of the histograms' buckets; one more bucket holds the rest (+Inf).
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HISTOGRAMS = {
    "webhook_seconds": "time of the auth webhook calls, answered or not",
    "push_seconds": "time the master took to answer a push request",
}


class Histogram:
    """Counts per bucket of `BUCKETS` (and +Inf) and the sum of what was observed."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one duration."""
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def as_list(self) -> list[float]:
        """`[count per bucket …, +Inf bucket, sum]`: what a snapshot holds, summed element-wise."""
        return [*self.counts, self.total]


class Metrics:
    """One process's counters (attributes named in `COUNTERS`), histograms and gauges."""

    __slots__ = (*COUNTERS, "_gauges", "histograms")

    messages_in: int
    deliveries: int
    invalid_messages: int
    slow_consumer_drops: int
    ping_timeouts: int
    rate_limited: int
    protocol_errors: int
    slow_requests: int
    redis_reconnects: int
    redis_slot_map_reads: int
    redis_channels_moved: int
    recoveries: int
    recoveries_failed: int
    history_catchups: int
    pusher_webhook_events_sent: int
    pusher_webhook_failures: int
    pusher_webhook_events_expired: int
    pusher_webhook_events_dropped: int
    pusher_webhook_events_skipped: int
    connections_total: int
    handshakes_refused_request: int
    handshakes_refused_auth: int
    handshakes_refused_origin: int
    handshakes_refused_unavailable: int
    pushes: int
    pushes_refused: int
    publications: int
    client_events: int
    handshakes_refused_pusher: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self._gauges: dict[str, Callable[[], int]] = {}
        self.histograms = {name: Histogram() for name in HISTOGRAMS}

    def add_gauge(self, name: str, read: Callable[[], int]) -> None:
        """Report `read()` as the gauge `name` in every snapshot."""
        if name in COUNTERS or name in HISTOGRAMS:
            raise ValueError(f"{name} is a counter or histogram")
        self._gauges[name] = read

    def observe(self, name: str, seconds: float) -> None:
        """Count one duration in the histogram `name` (one of `HISTOGRAMS`)."""
        self.histograms[name].observe(seconds)

    def snapshot(self) -> dict[str, int | list[float]]:
        """Every gauge, read now, then every counter, then every histogram as a list."""
        values: dict[str, int | list[float]] = {name: int(read()) for name, read in self._gauges.items()}
        values.update((name, getattr(self, name)) for name in COUNTERS)
        values.update((name, histogram.as_list()) for name, histogram in self.histograms.items())
        return values

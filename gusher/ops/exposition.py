"""`/metrics` in Prometheus's text format: a role's workers summed, and on the master the cluster.

Each worker publishes its `Metrics.snapshot()` in its heartbeat (every
`RETURN_SERVERINFO_INTERVAL`), so the worker that answers a scrape sums its
own live snapshot with its siblings' last reports: no shared files, no
per-process registry, and nothing added to the fan-out path (the counters
are the plain integers the worker keeps anyway). prometheus-client's
multiprocess mode would instead write an mmap on every `inc()` (~1.3 µs
under gevent, FACTS) and keep the files of dead workers until they are
wiped. A sibling's figures are at most one interval old.

Names follow Prometheus's conventions (`gusher_…`, `_total`, base units);
labels hold bounded values only (a reason, a result, a slave's address),
never a channel or a user.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import orjson

from gusher.core.metrics import BUCKETS, HISTOGRAMS
from gusher.ops.heartbeat import DEAD_AFTER_INTERVALS

if TYPE_CHECKING:
    from prometheus_client.core import HistogramMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (family, help, [(label value, snapshot field)]) — one labelled counter family from several fields.
_LABELLED = (
    (
        "gusher_handshakes",
        "WebSocket handshakes by result (accepted, or the kind of refusal)",
        "result",
        [
            ("accepted", "connections_total"),
            ("request", "handshakes_refused_request"),
            ("auth", "handshakes_refused_auth"),
            ("origin", "handshakes_refused_origin"),
            ("unavailable", "handshakes_refused_unavailable"),
            ("pusher", "handshakes_refused_pusher"),
        ],
    ),
    (
        "gusher_app_webhook_events",
        "Pusher-format webhook events to apps' events_url, by result",
        "result",
        [
            ("sent", "pusher_webhook_events_sent"),
            ("expired", "pusher_webhook_events_expired"),
            ("dropped", "pusher_webhook_events_dropped"),
            ("skipped", "pusher_webhook_events_skipped"),
        ],
    ),
    (
        "gusher_disconnects",
        "clients the server closed, by reason",
        "reason",
        [
            ("slow_consumer", "slow_consumer_drops"),
            ("ping_timeout", "ping_timeouts"),
            ("rate_limited", "rate_limited"),
            ("protocol_error", "protocol_errors"),
        ],
    ),
    (
        "gusher_messages_dropped",
        "messages from the broker never delivered, by reason",
        "reason",
        [("invalid", "invalid_messages")],
    ),
    (
        "gusher_recoveries",
        "subscribes that resumed a history channel, by result",
        "result",
        [("recovered", "recoveries"), ("not_recovered", "recoveries_failed")],
    ),
    (
        "gusher_pushes",
        "push requests the master answered, by result",
        "result",
        [("accepted", "pushes"), ("refused", "pushes_refused")],
    ),
)
# (family, help, snapshot field)
_COUNTERS = (
    ("gusher_connections_opened", "WebSocket connections accepted", "connections_total"),
    ("gusher_messages_received", "messages received from the broker", "messages_in"),
    ("gusher_messages_delivered", "messages written to clients, one per recipient", "deliveries"),
    ("gusher_messages_published", "messages the master published", "publications"),
    ("gusher_slow_requests", "HTTP requests cut: headers or body not in time", "slow_requests"),
    ("gusher_redis_reconnects", "pub/sub connections to Redis re-established", "redis_reconnects"),
    ("gusher_redis_slot_map_reads", "Redis Cluster slot maps read again", "redis_slot_map_reads"),
    ("gusher_redis_channels_moved", "channels moved to another cluster primary", "redis_channels_moved"),
    ("gusher_history_catchups", "history channels read back after a pub/sub gap", "history_catchups"),
    ("gusher_app_webhook_failures", "Pusher-format webhook POSTs that failed", "pusher_webhook_failures"),
    ("gusher_client_events", "Pusher client events relayed", "client_events"),
)
_GAUGES = (
    ("gusher_connections", "open WebSocket connections", "connections"),
    ("gusher_subscriptions", "channels subscribed in Redis", "subscriptions"),
    ("gusher_greenlets", "greenlets alive", "goroutines"),
    ("gusher_resident_memory_bytes", "resident memory of the workers", "usage-memory"),
)
_HISTOGRAMS = {
    "webhook_seconds": "gusher_webhook_duration_seconds",
    "push_seconds": "gusher_push_duration_seconds",
}


def live_reports(
    fields: Mapping[bytes, bytes], now: float, interval: float, skip: str = ""
) -> list[dict[str, Any]]:
    """The workers' reports of one server that are fresher than three intervals (but `skip`'s)."""
    reports = []
    for worker, raw in fields.items():
        if worker.decode("utf-8", "replace") == skip:
            continue
        try:
            report = orjson.loads(raw)
            fresh = now - float(report["update_time"]) <= interval * DEAD_AFTER_INTERVALS
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
        if fresh and isinstance(report, dict):
            reports.append(report)
    return reports


def summed(reports: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Integers added up, histogram lists added element-wise, across reports — pure."""
    total: dict[str, Any] = {}
    for report in reports:
        for name, value in report.items():
            if isinstance(value, bool):
                continue
            if isinstance(value, int):
                total[name] = total.get(name, 0) + value
            elif name in HISTOGRAMS and isinstance(value, list) and len(value) == len(BUCKETS) + 2:
                previous = total.get(name) or [0] * len(value)
                total[name] = [a + b for a, b in zip(previous, value, strict=True)]
    return total


_MASTER_ONLY = {"pushes", "pushes_refused", "publications", "push_seconds"}
_SLAVE_ONLY = {
    "connections",
    "goroutines",
    "subscriptions",
    "connections_total",
    "messages_in",
    "deliveries",
    "invalid_messages",
    "slow_consumer_drops",
    "ping_timeouts",
    "rate_limited",
    "protocol_errors",
    "redis_reconnects",
    "redis_slot_map_reads",
    "redis_channels_moved",
    "recoveries",
    "recoveries_failed",
    "history_catchups",
    "handshakes_refused_request",
    "handshakes_refused_auth",
    "handshakes_refused_origin",
    "handshakes_refused_unavailable",
    "handshakes_refused_pusher",
    "client_events",
    "pusher_webhook_events_sent",
    "pusher_webhook_failures",
    "pusher_webhook_events_expired",
    "pusher_webhook_events_dropped",
    "pusher_webhook_events_skipped",
    "webhook_seconds",
}


def for_role(values: Mapping[str, Any], role: str) -> dict[str, Any]:
    """`values` without what `role` never counts: its page shows no zeros of the other role."""
    left_out = _MASTER_ONLY if role == "slave" else _SLAVE_ONLY
    return {name: value for name, value in values.items() if name not in left_out}


def families(values: Mapping[str, Any]) -> Iterator[Metric]:
    """The metric families of one role's summed snapshot (fields absent from it are left out)."""
    # Imported at the first scrape: 0.84 MB per worker that a deployment which never scrapes
    # should not pay (at 10k connections on two workers, 0.17 KB per connection).
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    for name, documentation, field in _GAUGES:
        if field in values:
            yield GaugeMetricFamily(name, documentation, value=values[field])
    for name, documentation, field in _COUNTERS:
        if field in values:
            yield CounterMetricFamily(name, documentation, value=values[field])
    for name, documentation, label, fields in _LABELLED:
        present = [(value, field) for value, field in fields if field in values]
        if present:
            family = CounterMetricFamily(name, documentation, labels=[label])
            for value, field in present:
                family.add_metric([value], values[field])
            yield family
    for field, name in _HISTOGRAMS.items():
        if field in values:
            yield _histogram(name, HISTOGRAMS[field], values[field])


def _histogram(name: str, documentation: str, counts: list[float]) -> HistogramMetricFamily:
    from prometheus_client.core import HistogramMetricFamily

    cumulative, buckets = 0.0, []
    for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts[:-1], strict=True):
        cumulative += count
        buckets.append((bound, cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=counts[-1])


def cluster_families(slaves: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The master's view of every live slave (from their heartbeats), labelled by slave."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    yield GaugeMetricFamily("gusher_cluster_slaves", "live slaves", value=len(slaves))
    connections = GaugeMetricFamily(
        "gusher_cluster_connections", "open WebSockets per slave", labels=["slave"]
    )
    delivered = CounterMetricFamily(
        "gusher_cluster_messages_delivered", "messages delivered per slave", labels=["slave"]
    )
    for slave_id, entry in sorted(slaves.items()):
        connections.add_metric([slave_id], entry.get("connections", 0))
        delivered.add_metric([slave_id], entry.get("deliveries", 0))
    yield connections
    yield delivered


class _Collected:
    """A prometheus-client collector over metric families made in advance (one scrape)."""

    def __init__(self, metrics: list[Metric]) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self.metrics)


def render(metrics: Iterable[Metric]) -> bytes:
    """The text exposition format of `metrics`, written by prometheus-client."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(list(metrics)))  # type: ignore[arg-type]
    return generate_latest(registry)

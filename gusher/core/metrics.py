"""The counters and gauges of one process, in one place — pure.

Every part of a worker that counts something increments an attribute of the
worker's `Metrics` (a plain `+= n`, ~30 ns: the fan-out counts once per
channel and batch, never once per recipient). Gauges are read when asked for,
from the objects that own the state (`add_gauge`). Readers take a
`snapshot()`: the slave's heartbeat today, a `/metrics` endpoint later.
"""

from __future__ import annotations

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
    "connections_total": "connections accepted since start",
}


class Metrics:
    """One process's counters (attributes named in `COUNTERS`) and gauges."""

    __slots__ = (*COUNTERS, "_gauges")

    messages_in: int
    deliveries: int
    invalid_messages: int
    slow_consumer_drops: int
    ping_timeouts: int
    rate_limited: int
    protocol_errors: int
    slow_requests: int
    redis_reconnects: int
    connections_total: int

    def __init__(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)
        self._gauges: dict[str, Callable[[], int]] = {}

    def add_gauge(self, name: str, read: Callable[[], int]) -> None:
        """Report `read()` as the gauge `name` in every snapshot."""
        if name in COUNTERS:
            raise ValueError(f"{name} is a counter")
        self._gauges[name] = read

    def snapshot(self) -> dict[str, int]:
        """Every gauge, read now, then every counter."""
        values = {name: int(read()) for name, read in self._gauges.items()}
        values.update((name, getattr(self, name)) for name in COUNTERS)
        return values

"""What a master worker runs besides its routes: its broker, counters and heartbeat.

The master is stateless for pushes; its heartbeat (`gusher:master:{ip}@{port}`)
only carries its counters to the sibling that answers a `/metrics` scrape.
Started in gunicorn's `post_worker_init`, or on the first request when the
app is served some other way; stopped (its heartbeat removed) in `worker_exit`.
"""

from __future__ import annotations

from typing import Any

from gusher.broker.base import Broker
from gusher.config import Settings
from gusher.core.metrics import Metrics
from gusher.ops.heartbeat import Heartbeat


class MasterServices:
    """One master worker's broker, metrics and heartbeat."""

    def __init__(self, settings: Settings, broker: Broker, metrics: Metrics) -> None:
        self.settings = settings
        self.broker = broker
        self.metrics = metrics
        self.heartbeat = Heartbeat(settings, broker.status, metrics.snapshot, role="master")
        self.started = False

    def start(self, worker: Any = None) -> None:
        """Start beating (idempotent)."""
        if not self.started:
            self.started = True
            self.heartbeat.start()

    def stop(self) -> None:
        """Stop beating and remove this worker's report."""
        if self.started:
            self.started = False
            self.heartbeat.stop()

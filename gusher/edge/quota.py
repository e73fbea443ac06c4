"""Apps' connection quotas (`max_connections` in the app's hash), across every slave.

Each worker knows its own connections per app exactly; the others' come from
their presence reports (`gusher.ops.presence`: every worker writes its
connections per app once a heartbeat interval), read at most once a second
per app. So a quota holds to within what connects in one interval: enough to
stop an app from taking a cluster's capacity, which is what a quota is for,
without a Redis call per handshake. Pusher refuses with close code 4004
(pusher-js does not reconnect); gusher's protocol gets HTTP 429.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gusher.broker.base import StatusStore
from gusher.core.apps import AppConfig
from gusher.ops import presence

_READ_EVERY = 1.0  # seconds an app's count of the other workers is reused


class ConnectionQuota:
    """Decides whether one more connection of an app fits its `max_connections`."""

    def __init__(self, status: StatusStore, worker_id: str, local: Callable[[str], int]) -> None:
        self.status = status
        self.worker_id = worker_id
        self.local = local
        self._others: dict[str, tuple[float, int]] = {}  # app key → (read at, connections)

    def refusal(self, app: AppConfig) -> str:
        """Why `app` may take no more connections, or "" (also for apps without a quota).

        Raises:
            BackendUnavailable: the others' reports cannot be read.
        """
        if not app.max_connections:
            return ""
        now = time.monotonic()
        read_at, others = self._others.get(app.key, (float("-inf"), 0))
        if now - read_at > _READ_EVERY:
            merged, _ = presence.merge(
                self.status.presence_reports(app.key), time.time(), skip=self.worker_id
            )
            others = merged.connections
            if len(self._others) > 10_000:
                self._others.clear()
            self._others[app.key] = (now, others)
        if others + self.local(app.key) >= app.max_connections:
            return f"the app holds its maximum of {app.max_connections} connections"
        return ""

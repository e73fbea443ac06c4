"""Keep-alive: ping quiet clients, drop dead ones, finish closes that stalled.

Run by the worker's sweeper once a second over every session. A client is
quiet when nothing at all arrived from it for `GUSHER_PING_INTERVAL`
seconds; it is then sent its protocol's keep-alive, and dropped when another
`GUSHER_PING_TIMEOUT` seconds pass without a byte from it. A connection
whose closing handshake is not answered within `GUSHER_CLOSE_TIMEOUT` is
released.
"""

from __future__ import annotations

from collections.abc import Iterable

from gusher.config import Settings
from gusher.core.metrics import Metrics
from gusher.edge.session import Session
from gusher.wire.base import Disconnect


def sweep(sessions: Iterable[Session], now: float, settings: Settings, metrics: Metrics) -> None:
    """One pass over `sessions` (a copy: closing one changes the worker's dict)."""
    ping_after = settings.ping_interval
    dead_after = ping_after + settings.ping_timeout
    for session in sessions:
        conn = session.conn
        quiet = now - conn.last_heard
        if not conn.is_open:
            if now - conn.closing_since > settings.close_timeout:
                conn.release()
        elif ping_after and quiet > dead_after and conn.awaiting_pong:
            metrics.ping_timeouts += 1
            session.disconnect(Disconnect.PING_TIMEOUT, at_once=True)
        elif ping_after and quiet > ping_after and not conn.awaiting_pong:
            conn.awaiting_pong = True
            conn.send(session.protocol.keepalive())

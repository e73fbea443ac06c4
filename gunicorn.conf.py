"""gunicorn settings for both roles (gunicorn reads ./gunicorn.conf.py by default).

The role is the WSGI module named on the command line (`wsgi_master:app` or
`wsgi_slave:app`), or GUSHER_ROLE. The bind address comes from the seed's
listen settings, so `.env` alone configures a deployment.
"""

import sys

from gusher import __version__, logs
from gusher.config import load_settings, parse_listen

_settings = load_settings()
# gunicorn's lines and gusher's alike: time, pid, level and logger (or JSON), repeats held back.
logconfig_dict = logs.gunicorn_config(_settings.log_level, _settings.log_format)
logger_class = "gusher.worker.GusherLogger"  # with the access log always off


def _role() -> str:
    import os

    role = os.environ.get("GUSHER_ROLE", "")
    if role:
        return role
    return "master" if any("wsgi_master" in arg for arg in sys.argv) else "slave"


_ROLE = _role()
_host, _port = parse_listen(_settings.master_api_listen if _ROLE == "master" else _settings.api_listen)

bind = [f"{_host}:{_port}"]
# gevent's worker, with JSON error answers and counted header stalls (gusher/worker.py).
worker_class = "gusher.worker.GusherWorker"
workers = _settings.master_workers if _ROLE == "master" else _settings.slave_workers
# Upgraded WebSockets leave gunicorn's pool at once (the Hub owns them), so this
# bounds handshakes and HTTP requests in flight, not held connections.
worker_connections = 16384
# Each WebSocket is one request: recycling workers by request count would drop clients.
max_requests = 0
timeout = 30
graceful_timeout = 10
# Also the time each request's headers may take to arrive: a sender that trickles
# them is cut after it (gusher/worker.py counts it).
keepalive = 5
# gunicorn's largest request line (its maximum): a JWT in `?auth=` may be ~8,000 characters.
limit_request_line = 8190
# The listen queue of each worker's socket. Linux caps it at net.core.somaxconn (4,096 by
# default), so asking for more costs nothing; raising somaxconn lets a slave's whole clientele
# wait in the queue after a restart instead of timing out SYNs that come back 1, 3, 7 s later:
# 20,000 clients were back in 18 s instead of 29 s (bench.storm, docs/DEPLOY.md).
backlog = 65535
# One SO_REUSEPORT listening socket per worker: the kernel spreads new
# connections evenly over the workers. With one shared socket, whichever worker
# wakes first accepts, and a slave's workers ended up holding 44%/56% of the
# clients, so the fuller one set every fan-out's tail latency.
reuse_port = True
control_socket_disable = True
loglevel = _settings.log_level
accesslog = None
errorlog = "-"
proc_name = f"gusher-{_ROLE}"


def on_starting(server):
    """Refuse to start on a port something already listens on (reuse_port would share it silently)."""
    from gusher.embedded import ensure_port_free
    from gusher.errors import ConfigError

    try:
        ensure_port_free(_host, _port)
    except ConfigError as exc:
        raise RuntimeError(exc.reason) from None  # gunicorn prints "Error: …" and exits 1


def when_ready(server):
    """Say where this role listens and which Redis it uses (gunicorn's own line has no address
    when each worker binds its port)."""
    server.log.info(
        "gusher %s %s listening on http://%s:%d with %d workers; Redis %s",
        __version__,
        _ROLE,
        _host,
        _port,
        workers,
        _settings.redis_url_redacted,
    )


def post_worker_init(worker):
    """Start the slave worker's subscriber, heartbeat and sweeper (after monkey-patching)."""
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("gusher.services")
    if services is not None:
        services.start(worker)


def worker_exit(server, worker):
    """Leave the cluster cleanly even when the watcher did not run (a worker that failed to boot
    has no app)."""
    services = getattr(getattr(worker, "wsgi", None), "extensions", {}).get("gusher.services")
    if services is not None:
        services.stop()

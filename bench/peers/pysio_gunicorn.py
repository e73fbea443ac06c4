"""gunicorn settings of the python-socketio peer (`-c bench/peers/pysio_gunicorn.py`)."""

import os

bind = [f"127.0.0.1:{os.environ['BENCH_PORT']}"]
worker_class = "gevent"
workers = int(os.environ.get("BENCH_WORKERS", "2"))
worker_connections = 20000  # each WebSocket holds a greenlet of the pool for its whole life
timeout = 60
backlog = 4096
loglevel = "warning"
control_socket_disable = True

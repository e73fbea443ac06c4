"""Peer 1: Flask-SocketIO (python-socketio) with a Redis message queue.

Served the way Flask-SocketIO's deployment docs describe for gevent:
`gunicorn -k gevent ... bench.peers.pysio_app:app` with simple-websocket
providing the WebSocket transport, and `message_queue=redis://…` so that any
process (here the bench's emitter) can emit to rooms on every worker. The
clients use the WebSocket transport only, so no sticky sessions are needed
across the gunicorn workers. A client joins a room by emitting `join`.
"""

import os

from flask import Flask
from flask_socketio import SocketIO, emit, join_room

app = Flask(__name__)
socketio = SocketIO(
    app,
    async_mode="gevent",
    message_queue=os.environ["BENCH_REDIS_URL"],
    transports=["websocket"],
    cors_allowed_origins="*",
)


@socketio.on("join")
def on_join(room: str) -> None:
    """Put this client in `room` and confirm, so the bench knows it is subscribed."""
    join_room(room)
    emit("joined", room)

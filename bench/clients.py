"""The runner's handle on the load-generator processes.

`ClientPool` spawns K `bench.loadgen` processes, spreads connections over
them (each at most `PER_PROCESS` sockets, each its own 127.0.0.x source
address), sends each the same command and merges the answers. Every wait is
bounded; `stop()` always ends the processes, also after a failure.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from bench import loadgen
from bench.procs import stop_workers

PER_PROCESS = 12_000  # well under the 20,000 descriptors a process may hold
POLL_SECONDS = 0.05  # how often the runner asks the generators for their counts
_CTX = multiprocessing.get_context("spawn")


@dataclass
class ConnectResult:
    ready: int
    failed: int
    elapsed: float
    errors: dict[str, int]
    connect_ms: array = field(default_factory=lambda: array("d"))

    @property
    def rate(self) -> float:
        """Connections made ready per second over the whole batch."""
        return self.ready / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class Samples:
    """Deliveries recorded by every process: message seq, latency and receive time (ns)."""

    seqs: array
    lats: array
    recvs: array
    open: int
    closed: int


class ClientPool:
    """K load-generator processes, addressed together."""

    def __init__(self, processes: int, nice: int | None = None, source_base: int = 10) -> None:
        if nice is None:  # BENCH_CLIENT_NICE: how far the generator steps back from the servers
            nice = int(os.environ.get("BENCH_CLIENT_NICE", "5"))
        # Process p connects from 127.0.1.{source_base + p}: pools with different bases
        # can be told apart on the server's side (bench.pusher counts each per worker).
        self.source_base = source_base
        self.pipes: list[Any] = []
        self.procs: list[Any] = []
        for _ in range(processes):
            parent, child = _CTX.Pipe()
            proc = _CTX.Process(target=loadgen.main, args=(child, nice), daemon=True)
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    @staticmethod
    def processes_for(n: int) -> int:
        """How many generator processes `n` connections need (at least two)."""
        return max(2, -(-n // PER_PROCESS))

    def _ask(self, command: str, arg: Any = None, timeout: float = 30.0) -> list[Any]:
        for pipe in self.pipes:
            pipe.send((command, arg))
        deadline = time.monotonic() + timeout
        replies = []
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"load generator did not answer {command!r} within {timeout} s")
            replies.append(pipe.recv())
        return replies

    def connect(
        self,
        host: str,
        port: int,
        adapter: dict,
        channels_of: Any,
        n: int,
        first: int = 0,
        concurrency: int = 400,
        timeout: float = 120.0,
    ) -> ConnectResult:
        """Open connections `first … first+n-1`; `channels_of(i)` lists what connection i joins."""
        k = len(self.pipes)
        for p, pipe in enumerate(self.pipes):
            items = [(i, channels_of(i)) for i in range(first + p, first + n, k)]
            pipe.send(
                (
                    "connect",
                    {
                        "host": host,
                        "port": port,
                        "adapter": adapter,
                        "items": items,
                        "concurrency": max(1, concurrency // k),
                        "timeout": timeout,
                        "source": self.source_address(p),
                    },
                )
            )
        replies = []
        deadline = time.monotonic() + timeout + 30
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError("load generator did not finish connecting")
            replies.append(pipe.recv())
        connect_ms = array("d")
        errors: dict[str, int] = {}
        for r in replies:
            connect_ms.frombytes(r["connect_ms"])
            for reason, count in r["errors"].items():
                errors[reason] = errors.get(reason, 0) + count
        return ConnectResult(
            sum(r["ready"] for r in replies),
            sum(r["failed"] for r in replies),
            max(r["elapsed"] for r in replies),
            errors,
            connect_ms,
        )

    def source_address(self, p: int) -> str:
        """The address process `p` connects from."""
        return f"127.0.1.{self.source_base + p}"

    def count(self) -> int:
        """Deliveries recorded so far, all processes."""
        return sum(r["messages"] for r in self._ask("count"))

    def open_connections(self) -> int:
        return sum(r["open"] for r in self._ask("count"))

    def wait_for(self, expected: int, timeout: float, quiet: float = 0.0, every: float = POLL_SECONDS) -> int:
        """Poll until `expected` deliveries arrived or `timeout` passed; return the count.

        With `quiet` > 0, also stop once the count has not moved for that long.
        Each poll wakes the runner and every generator process, which then
        compete with the server for the same cores while it fans out; polling
        every few ms (as this did at first) slowed gusher's fan-out by a third,
        while the limit wrote with the runner asleep, waiting for its answer.
        Latency is stamped by the kernel on receipt, so a slower poll costs
        only run time, never accuracy.
        """
        deadline = time.monotonic() + timeout
        last, last_change = -1, time.monotonic()
        while True:
            got = self.count()
            now = time.monotonic()
            if got != last:
                last, last_change = got, now
            if got >= expected or now > deadline or (quiet and now - last_change > quiet):
                return got
            time.sleep(every)

    def reset(self) -> None:
        self._ask("reset")

    def collect(self) -> Samples:
        """Every delivery recorded since the last reset/collect (then cleared)."""
        seqs, lats, recvs = array("q"), array("q"), array("q")
        open_, closed = 0, 0
        for r in self._ask("collect", timeout=60):
            seqs.frombytes(r["seqs"])
            lats.frombytes(r["lats"])
            recvs.frombytes(r["recvs"])
            open_ += r["open"]
            closed += r["closed"]
        return Samples(seqs, lats, recvs, open_, closed)

    def close_all(self) -> None:
        self._ask("close", timeout=60)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        """End every generator process, politely first."""
        stop_workers(self.pipes, self.procs)
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.procs = [], []

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

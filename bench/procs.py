"""Child processes the bench starts, and how their memory and CPU are measured.

Every server runs in its own process group, so that `stop()` can end it with
everything it forked, but in the runner's session. Linux's scheduler
autogroups share the CPU between sessions first, so a server in a session of
its own got half the machine against the load generator, whatever the
generator's nice: gusher's workers waited in the run queue as long as they
ran, while the limit baseline, spawned in the runner's session, barely
waited. Every start registers the process with `Reaper`, which the runner
unwinds in `finally` and at exit — a failed run leaves nothing behind.
"""

from __future__ import annotations

import atexit
import compileall
import functools
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = Path(tempfile.gettempdir()) / "gusher-bench-logs"


class Reaper:
    """Stop callbacks, run newest first, exactly once."""

    _stops: list[Callable[[], None]] = []

    @classmethod
    def add(cls, stop: Callable[[], None]) -> None:
        cls._stops.append(stop)

    @classmethod
    def run(cls) -> None:
        while cls._stops:
            stop = cls._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep tearing down the rest
                print(f"bench: teardown step failed: {exc!r}", flush=True)


atexit.register(Reaper.run)


@functools.cache
def compile_tree(root: Path = ROOT) -> Path:
    """Compile a gusher tree's modules once, so its servers boot as an installed gusher does.

    The bench's servers run with PYTHONDONTWRITEBYTECODE (as this machine and
    the Docker image set it), and a tree without `__pycache__` had every
    worker compile gusher's ~12,000 lines at each boot: ~0.2 s of a slave's
    restart in the storm, which no deployment with its .pyc files pays.
    """
    compileall.compile_dir(root / "gusher", quiet=1)
    for module in ("wsgi_master.py", "wsgi_slave.py", "gunicorn.conf.py"):
        if (root / module).exists():
            compileall.compile_file(root / module, quiet=1)
    return root


class ServerProcess:
    """A command in its own process group, with its output in a log file.

    `process_group=0` (not `start_new_session`) keeps the command in the
    runner's session, hence in the scheduler autogroup of the limit baseline
    and the load generator: every system meets the same competition.
    """

    def __init__(
        self, name: str, args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        LOG_DIR.mkdir(exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}.log"
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
        log.close()
        Reaper.add(self.stop)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def children(self) -> list[int]:
        """Direct children (gunicorn workers, node cluster workers)."""
        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after `timeout`."""
        if self.process.poll() is not None:
            return
        _signal_group(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(self.pid, signal.SIGKILL)
            self.process.wait(5)
        _signal_group(self.pid, signal.SIGKILL)  # stragglers of the group


def stop_workers(pipes: Iterable[Any], procs: Iterable[Any]) -> None:
    """End multiprocessing children that take commands on a pipe: ask, wait 5 s, kill."""
    for pipe in pipes:
        try:
            pipe.send(("exit", None))
        except OSError:  # BrokenPipeError included: the child is already gone
            pass
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of the resident memory of `pids` (gone processes count 0)."""
    total = 0
    for pid in pids:
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU time consumed so far by `pids`."""
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def cpu_percent(pids: list[int], seconds: float) -> float:
    """CPU use of `pids` over the next `seconds`, in percent of one core."""
    before = cpu_seconds(pids)
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pids) - before) / seconds

"""The machine and software versions a run measured, for the report's header."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from typing import Any

import psutil


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command(args: list[str]) -> str:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def collect() -> dict[str, Any]:
    """Date, machine and versions (Python packages, valkey, node and npm packages)."""
    from bench import peers
    from bench.peers import nchan
    from gusher.embedded import server_binary

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {
            "cpu": _cpu_model(),
            "cores": os.cpu_count(),
            "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "kernel": platform.release(),
            "fd_limit": _fd_limit(),
            "somaxconn": _sysctl("net/core/somaxconn"),
            "load_avg_at_start": round(os.getloadavg()[0], 2),
        },
        "versions": {
            "python": platform.python_version(),
            **{
                p: _version(p)
                for p in (
                    "gusher",
                    "gunicorn",
                    "gevent",
                    "flask-sock",
                    "redis",
                    "hiredis",
                    "python-socketio",
                    "flask-socketio",
                    "python-engineio",
                    "simple-websocket",
                )
            },
            "valkey-server": _command([server_binary(), "--version"]).split(" ")[2:3]
            and _command([server_binary(), "--version"]).split(" ")[2],
            "wrk": _command(["sh", "-c", "wrk --version 2>&1 | head -1"]).split(" [")[0],
            **peers.node_versions(),
            **nchan.versions(),
        },
    }


def _sysctl(name: str) -> int | None:
    """A kernel setting under /proc/sys (the storm's accept queues are capped by somaxconn)."""
    try:
        with open(f"/proc/sys/{name}") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]

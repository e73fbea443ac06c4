"""py-spy on server processes: where their samples fall, summed per function.

`record` starts py-spy on one process (raw collapsed stacks, 250 samples a
second, only while the process runs, not while it waits); SIGINT makes
py-spy write its file and exit. `summarize` reads such files back. py-spy
is not in requirements.txt: `.venv/bin/pip install py-spy`.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.procs import ROOT

PY_SPY = ROOT / ".venv" / "bin" / "py-spy"
# What a slave's fan-out runs: the hub's loop, the sends, each protocol's encoding of a message.
FAN_OUT = (
    "Hub._fan_out (gusher/edge/hub.py)",
    "Connection.send_to_all (gusher/edge/connection.py)",
    "GusherProtocol.publication (gusher/wire/gusher.py)",
    "PusherProtocol.publication (gusher/wire/pusher.py)",
)


def record(pid: int, path: Path) -> subprocess.Popen:
    """py-spy sampling `pid` 250 times a second into `path`, as raw collapsed stacks."""
    command = [str(PY_SPY), "record", "--pid", str(pid), "--rate", "250", "--format", "raw"]
    return subprocess.Popen(
        [*command, "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def summarize(files: list[Path], watched: tuple[str, ...] = FAN_OUT, top: int = 12) -> dict[str, Any]:
    """py-spy raw stacks → the busiest functions (own samples) and the shares of `watched` (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for path in files:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            frames = [_short(frame) for frame in stack.split(";")]
            total += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
    return {
        "samples": total,
        "self_pct": {frame: _pct(c, total) for frame, c in own.most_common(top)},
        "inclusive_pct": {frame: _pct(inclusive[frame], total) for frame in watched},
    }


def _short(frame: str) -> str:
    """`func (…/site-packages/x/y.py:12)` → `func (x/y.py)`, so lines of a function add up."""
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    for marker in ("site-packages/", f"{ROOT}/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def _pct(count: int, total: int) -> float:
    return round(100.0 * count / total, 1) if total else 0.0

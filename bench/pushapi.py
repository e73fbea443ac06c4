"""The push-API scenario: requests/s and latency of POST /api/push/... with wrk.

wrk (Debian package `wrk`, installed by bench/setup.sh) is a C load tool, so
the HTTP client is never the bottleneck. Its latency figures are for the
HTTP exchange (request → response), with `connections` keep-alive clients.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

_SCRIPT = 'wrk.method = "POST"\n'
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


def available() -> bool:
    return shutil.which("wrk") is not None


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, p50/p99 latency (ms) and error count from wrk's --latency report — pure."""
    figures: dict[str, float] = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    figures["api_requests_per_s"] = float(match.group(1)) if match else 0.0
    for label, key in (("50%", "api_p50_ms"), ("99%", "api_p99_ms")):
        match = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
        if match:
            figures[key] = float(match.group(1)) * _UNITS[match.group(2)]
    errors = 0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if match:
        errors += int(match.group(1))
    match = re.search(r"Socket errors:.*?connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        errors += sum(int(g) for g in match.groups())
    figures["api_errors"] = float(errors)
    return figures


# Events per body of the batch scenario (the route's default bound, GUSHER_MAX_BATCH_EVENTS).
BATCH_EVENTS = 100


def batch_body(events: int = BATCH_EVENTS) -> str:
    """A `batch_events` body: `events` events, each to a channel of its own, 50-byte data — pure."""
    batch = [{"channel": f"b{i}", "event": "e", "data": "x" * 50} for i in range(events)]
    return json.dumps({"batch": batch}, separators=(",", ":"))


def run_wrk(
    url: str, seconds: float = 5.0, connections: int = 64, threads: int = 2, body: str = ""
) -> dict[str, float]:
    """Drive `url` with POSTs (of `body` as JSON, when given) for `seconds`; the parsed figures."""
    lua = _SCRIPT
    if body:
        lua += 'wrk.headers["Content-Type"] = "application/json"\nwrk.body = ' + json.dumps(body) + "\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        result = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
        )
    finally:
        Path(script.name).unlink(missing_ok=True)
    figures = parse_wrk(result.stdout)
    figures["api_connections"] = float(connections)
    return figures

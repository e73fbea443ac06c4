"""The push-API scenario: requests/s and latency of POST /api/push/... with wrk.

wrk (Debian package `wrk`, installed by bench/setup.sh) is a C load tool, so
the HTTP client is never the bottleneck. Its latency figures are for the
HTTP exchange (request → response), with `connections` keep-alive clients.
"""

from __future__ import annotations

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


def run_wrk(url: str, seconds: float = 5.0, connections: int = 64, threads: int = 2) -> dict[str, float]:
    """Drive `url` with POSTs for `seconds`; return the parsed figures."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT)
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

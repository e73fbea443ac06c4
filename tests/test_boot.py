"""What a worker pays at boot: a restarted slave's clients wait through it (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from gusher.embedded import free_port
from gusher.worker import _entry_points_read_once

ROOT = Path(__file__).resolve().parent.parent


def test_gevents_plugin_lookups_read_the_installed_distributions_once(monkeypatch) -> None:
    """Every lookup inside answers as `entry_points` does, from one reading; the original is back after."""
    readings: list[dict[str, Any]] = []
    original = metadata.entry_points

    def counted(**params: Any) -> Any:
        readings.append(params)
        return original(**params)

    monkeypatch.setattr(metadata, "entry_points", counted)
    expected = {ep.name for ep in original(group="console_scripts")}
    with _entry_points_read_once():
        for _ in range(3):
            assert {ep.name for ep in metadata.entry_points(group="console_scripts")} == expected
        assert not list(metadata.entry_points(group="gusher.no-such-group"))
    assert readings == [{}]
    assert metadata.entry_points is counted
    assert expected  # pytest's own scripts at least: the comparison above compared something


def test_a_slave_worker_loads_neither_the_masters_routes_nor_what_only_some_apps_need() -> None:
    """requests (Pusher webhooks) and PyJWT (JWT apps) wait for their first use: ~4 MB less per worker."""
    code = (
        "import gevent.monkey; gevent.monkey.patch_all()\n"
        "import json, sys, wsgi_slave\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('requests', 'jwt', 'charset_normalizer') or m.startswith(('gusher.api', 'gusher.edge.routes')))))\n"
    )
    env = dict(os.environ, REDIS_ADDR=f"127.0.0.1:{free_port()}", GUSHER_ENV_FILE="/nonexistent/.env")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == ["gusher.edge.routes"]  # the slave's own: seen

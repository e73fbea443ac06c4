"""schemathesis against a real master: docs/openapi.yaml and the server agree on every case it makes.

A bounded run (a fixed seed, ~30 cases per operation, every check) of the
examples, coverage and fuzzing phases, once on a master without an admin
token and once on one that has it, with and without the token sent. The
stateful phase is left out: the document declares no links, and the links
schemathesis infers feed response values into path parameters the document
does not allow. `/ws/{app_key}` and `/app/{app_key}` are WebSocket handshakes
of the slave, not HTTP API: tests/test_slave.py and tests/test_pusher_protocol.py
cover them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib

from tests.support import GunicornProcess, Webhook, new_app_key

ROOT = Path(__file__).resolve().parent.parent
ADMIN = "schemathesis-admin-token"


@pytest.fixture(scope="module")
def guarded_master(redis_server) -> Iterator[GunicornProcess]:
    process = GunicornProcess("master", redis_server.addr, workers=1, admin_token=ADMIN).start()
    yield process
    process.stop()


def _schemathesis(
    url: str, app_key: str, pusher_app: dict[str, str], cwd: Path, *headers: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "schemathesis.cli",
        "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
        "run", str(ROOT / "docs" / "openapi.yaml"),
        "--url", url,
        "--seed", "1",
        "--max-examples", "30",
        "--phases", "examples,coverage,fuzzing",
        "--exclude-path", "/ws/{app_key}",
        "--exclude-path", "/app/{app_key}",
        "--generation-database", "none",
        "--no-color",
    ]  # fmt: skip
    for header in headers:
        command += ["--header", header]
    env = dict(
        os.environ,
        GUSHER_ST_APP=app_key,
        GUSHER_ST_PUSHER_KEY=pusher_app["key"],
        GUSHER_ST_PUSHER_SECRET=pusher_app["secret"],
        GUSHER_ST_PUSHER_APP_ID=pusher_app["app_id"],
        SCHEMATHESIS_HOOKS=str(ROOT / "tests" / "schemathesis_hooks.py"),
    )
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("admin", ["open", "token-sent", "token-missing"])
def test_the_openapi_document_holds_against_a_real_master(
    request, redis_client: redis_lib.Redis, webhook: Webhook, tmp_path: Path, admin: str
) -> None:
    """Every generated request gets an answer its document allows: no 5xx, documented codes and
    bodies, 405 with Allow, valid data accepted and invalid data refused; without the admin token,
    the guarded operations answer nothing but 401."""
    master = request.getfixturevalue("master" if admin == "open" else "guarded_master")
    app_key = new_app_key("st")
    # With history, so that every push path runs the history script under fuzzing too.
    redis_client.hset(app_key, mapping={"url": webhook.url, "history_size": "5", "history_ttl": "60"})
    # The Pusher HTTP API's app: a secret and an app_id; tests/schemathesis_hooks.py signs its requests.
    pusher_app = {"key": new_app_key("st-pusher"), "secret": "st-pusher-secret", "app_id": "4242"}
    redis_client.hset(
        pusher_app["key"],
        mapping={"url": webhook.url, "secret": pusher_app["secret"], "app_id": pusher_app["app_id"]},
    )
    headers = [f"Authorization: Bearer {ADMIN}"] if admin == "token-sent" else []
    run = _schemathesis(master.url, app_key, pusher_app, tmp_path, *headers)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failure" not in run.stdout
    guarded = "7 operations returned only 401/403 responses"  # /metrics, /api/system/*, listings
    assert (guarded in run.stdout) == (admin == "token-missing"), run.stdout[-3000:]

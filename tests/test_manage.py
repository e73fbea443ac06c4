"""`gusher apps|push|stats` against a real Redis: an app is managed without redis-cli (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import Client, allow, new_app_key, wait_until


@pytest.fixture
def gusher(redis_server, tmp_path):
    """Run `gusher …` configured for the test Redis; returns (exit code, stdout, stderr)."""
    env = dict(os.environ, REDIS_ADDR=redis_server.addr, GUSHER_ENV_FILE=str(tmp_path / "none.env"))

    def run(*args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [sys.executable, "-m", "gusher.cli", *args], env=env, capture_output=True, text=True, timeout=30
        )
        return done.returncode, done.stdout, done.stderr

    return run


def test_an_app_is_added_shown_changed_and_removed(gusher, redis_client, webhook) -> None:
    """add (with a generated secret, printed once), list, show (secret hidden), set, rotate, remove."""
    app = new_app_key("cli")
    code, out, _ = gusher(
        "apps", "add", app, "--url", webhook.url, "--secret", "--origins", "https://a.example"
    )
    added = json.loads(out)
    assert code == 0 and added["secured"] and len(added["secret"]) == 64
    assert redis_client.hget(app, "secret").decode() == added["secret"]
    assert redis_client.hget(app, "url").decode() == webhook.url
    code, out, _ = gusher("apps", "list")
    assert code == 0 and f"{app}\tsecret\t{webhook.url}" in out.splitlines()
    code, out, _ = gusher("apps", "show", app)
    assert json.loads(out)["secret"] == "***" and json.loads(out)["origins"] == ["https://a.example"]
    code, out, _ = gusher("apps", "set", app, "origins=https://b.example", "--unset", "secret")
    assert code == 0 and not json.loads(out)["secured"] and not redis_client.hexists(app, "secret")
    code, out, _ = gusher("apps", "set", app, "history_size=50", "history_ttl=300")
    assert code == 0 and json.loads(out)["history"] == {"size": 50, "ttl": 300}
    code, out, _ = gusher("apps", "rotate-secret", app)
    assert code == 0 and redis_client.hget(app, "secret").decode() == out.strip()
    code, out, _ = gusher("apps", "remove", app)
    assert code == 0 and not redis_client.exists(app)


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (("apps", "add", "a@b", "--url", "http://x"), "@"),
        (("apps", "add", "NEW", "--url", "ftp://x"), "http(s) URL"),
        (("apps", "add", "APP", "--url", "http://x"), "exists already"),
        (("apps", "show", "no-such-app"), "unknown app_key"),
        (("apps", "set", "APP", "colour=blue"), "field=value"),
        (("apps", "set", "APP", "--unset", "url"), "remove the app"),
        (("apps", "set", "APP", "history_size=0"), "at least 1"),
        (("push", "APP", "c", "e", "{nope", "--json"), "not valid JSON"),
        (("push", "APP", "c", "e", ""), "data is empty"),
    ],
)
def test_refusals_are_one_line_and_exit_1(gusher, redis_client, webhook, args, reason) -> None:
    """Bad names, URLs, fields and data are refused with the reason, no traceback."""
    app = new_app_key("cli")
    redis_client.hset(app, "url", webhook.url)
    fresh = new_app_key("cli")
    code, _, err = gusher(*({"APP": app, "NEW": fresh}.get(a, a) for a in args))
    assert code == 1 and reason in err and "Traceback" not in err


def test_push_and_stats_reach_the_slaves(gusher, slave, redis_client, webhook, clients) -> None:
    """`gusher push` delivers to subscribers (a string, or JSON with --json); `gusher stats` lists slaves."""
    app = new_app_key("cli")
    redis_client.hset(app, "url", webhook.url)
    client = Client(slave.ws_url, app, allow("u", "news"))
    clients.append(client)
    assert client.subscribe("news")["event"] == "gusher.subscribe_succeeded"
    assert gusher("push", app, "news", "created", "hello")[0] == 0
    assert client.recv_json() == {"channel": "news", "event": "created", "data": "hello"}
    assert gusher("push", app, "news", "created", '{"n": 1}', "--json")[0] == 0
    assert client.recv_json()["data"] == {"n": 1}
    out = wait_until(lambda: (r := gusher("stats"))[0] == 0 and f"@{slave.port}\t" in r[1] and r[1])
    assert "connections" in out.splitlines()[0] and "slave(s)" in out.splitlines()[-1]


def test_push_numbers_the_messages_of_an_app_with_history(
    gusher, slave, redis_client, webhook, clients
) -> None:
    """As a push through the master: numbered, kept, and the offset printed (it was left out)."""
    app = new_app_key("cli")
    redis_client.hset(app, mapping={"url": webhook.url, "history_size": "10", "history_ttl": "60"})
    client = Client(slave.ws_url, app, allow("u", "news"))
    clients.append(client)
    assert client.subscribe("news")["event"] == "gusher.subscribe_succeeded"
    code, out, _ = gusher("push", app, "news", "created", "hello")
    assert code == 0 and json.loads(out) == {
        "channel": "news",
        "event": "created",
        "data": "hello",
        "offset": 1,
    }
    assert client.recv_json()["offset"] == 1
    assert redis_client.xlen(f"gusher:history:{app}@news") == 1


def test_every_command_has_help(gusher) -> None:
    """`--help` works for each command and verb."""
    for args in (("apps",), ("apps", "add"), ("apps", "set"), ("push",), ("stats",)):
        code, out, _ = gusher(*args, "--help")
        assert code == 0 and "usage: gusher" in out, args

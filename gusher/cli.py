"""`gusher master|slave|up|sign|apps|push|stats`: the seed's `./gusher.cluster master|slave`, and more.

- `gusher master` / `gusher slave` exec the same gunicorn servers users run by
  hand (`gunicorn -c gunicorn.conf.py wsgi_slave:app`).
- `gusher up` runs everything on one machine for real: an embedded
  Redis-compatible server when no `REDIS_ADDR` is configured, a demo webhook,
  the demo app `demo` whose webhook allows the channel `demo`, a master and a
  slave; it prints the demo page's address and a curl line that pushes to it.
  `gusher up --cluster`: a local 3-primary Valkey Cluster instead of the
  single embedded server.
- `gusher sign --secret-file F [--json BODY] URL` prints a signed curl line
  for an app that has a `secret` (see `gusher.core.signing`).
- `gusher apps|push|stats` manage apps, push and show the slaves against the
  configured Redis (`gusher.manage`).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from gusher.broker.formation import form_cluster
from gusher.config import load_settings, parse_listen
from gusher.core import signing
from gusher.embedded import EmbeddedCluster, EmbeddedRedis, ensure_port_free, free_port, wait_for_port
from gusher.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def gunicorn_command(role: str) -> list[str]:
    """The gunicorn command line of a role, run from the repository root."""
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), f"wsgi_{role}:app"]


def _exec_role(role: str) -> None:
    env = dict(os.environ, GUSHER_ROLE=role)
    os.chdir(ROOT)
    command = gunicorn_command(role)
    os.execve(command[0], command, env)


class _DemoWebhook(BaseHTTPRequestHandler):
    """Allows every client onto the channels `demo` and `demo.*`, as the user its `auth` names.

    A real app would check `auth` (a session cookie, a token); the demo page
    sends a name, so that "who is online" has someone to show.
    """

    def do_POST(self) -> None:
        form = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        name = form.get("auth", [""])[0].strip()[:40]
        user_id = name if name.isprintable() and name else "demo-user"
        body = json.dumps({"user_id": user_id, "channels": ["demo", "demo.*"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the demo prints its own summary."""


class _LocalRun:
    """What `gusher up` starts, in order, and stops in reverse: Redis, the demo webhook, both roles."""

    def __init__(self, cluster: bool = False) -> None:
        self.settings = load_settings()
        self.env = dict(os.environ)
        self.cluster = cluster
        self.embedded: EmbeddedRedis | None = None
        self.embedded_cluster: EmbeddedCluster | None = None
        self.webhook: ThreadingHTTPServer | None = None
        self.children: list[subprocess.Popen[bytes]] = []

    def start_redis(self) -> str:
        """An embedded server (a cluster with `--cluster`) unless `REDIS_ADDR` names one; its address."""
        if self.cluster:
            if self.settings.redis_addr:
                raise ConfigError("--cluster starts a cluster of its own: unset REDIS_ADDR to use it")
            self.embedded_cluster = EmbeddedCluster(form_cluster).start()
            self.env["REDIS_ADDR"] = self.embedded_cluster.url
            nodes = " ".join(node.addr for node in self.embedded_cluster.nodes)
            print(f"embedded Valkey Cluster, {len(self.embedded_cluster.nodes)} primaries on {nodes}")
        elif not self.settings.redis_addr:
            self.embedded = EmbeddedRedis().start()
            self.env["REDIS_ADDR"] = self.embedded.addr
            print(f"embedded Redis-compatible server on {self.embedded.addr}")
        return self.env.get("REDIS_ADDR") or self.settings.redis_addr

    def redis_cli_arguments(self) -> str:
        """How `redis-cli` reaches the Redis in use (`-h host -p port`, or `-u URL`)."""
        if self.embedded_cluster is not None:
            head = self.embedded_cluster.nodes[0]  # -c: follow the cluster's redirections
            return f"-c -h {head.host} -p {head.port}"
        if self.embedded is not None:
            return f"-h {self.embedded.host} -p {self.embedded.port}"
        return f"-u {load_settings(environ=self.env).redis_url_redacted}"

    def start_demo_app(self) -> None:
        """The demo webhook in a thread, and the app `demo` pointing at it."""
        from gusher.broker.factory import create_broker  # redis-py: not for `gusher sign`

        self.webhook = ThreadingHTTPServer(("127.0.0.1", free_port()), _DemoWebhook)
        threading.Thread(target=self.webhook.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{self.webhook.server_address[1]}/auth"
        create_broker(load_settings(environ=self.env), "gusher-up").apps.save("demo", {"url": url})

    def check_ports(self) -> None:
        """Refuse, before anything starts, to run on a port something listens on already."""
        for listen in (self.settings.master_api_listen, self.settings.api_listen):
            ensure_port_free(*parse_listen(listen))

    def start_roles(self) -> tuple[int, int]:
        """Master and slave, each in a session of its own; their ports once both accept."""
        for role in ("master", "slave"):
            # A session of their own: the terminal's Ctrl-C reaches only this
            # supervisor, which then stops them gracefully (SIGTERM: clients get
            # 1001) instead of gunicorn's quick-exit path for SIGINT.
            env = dict(self.env, GUSHER_ROLE=role)
            self.children.append(
                subprocess.Popen(gunicorn_command(role), cwd=ROOT, env=env, start_new_session=True)
            )
        _, master_port = parse_listen(self.settings.master_api_listen)
        _, slave_port = parse_listen(self.settings.api_listen)
        for role, port in (("master", master_port), ("slave", slave_port)):
            self._wait_listening(role, port)
        return master_port, slave_port

    def _wait_listening(self, role: str, port: int, timeout: float = 30.0) -> None:
        """Until `port` accepts; a role that exits meanwhile is an error (its log says why)."""
        deadline = time.monotonic() + timeout
        while True:
            for child in self.children:
                if child.poll() is not None:
                    raise ConfigError(
                        f"a server exited with code {child.returncode} before listening (see above)"
                    )
            try:
                wait_for_port("127.0.0.1", port, 0.2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise ConfigError(
                        f"the {role} does not listen on port {port} after {timeout:g} s"
                    ) from None

    def wait(self) -> None:
        """Until a role exits."""
        while all(child.poll() is None for child in self.children):
            time.sleep(0.5)

    def stop(self) -> None:
        """Everything started, gracefully (roles get 15 s), in reverse order."""
        for child in self.children:
            child.terminate()
        for child in self.children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        if self.webhook is not None:
            self.webhook.shutdown()
        if self.embedded is not None:
            self.embedded.stop()
        if self.embedded_cluster is not None:
            self.embedded_cluster.stop()


def _up_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gusher up",
        description="Run an embedded Redis-compatible server (unless REDIS_ADDR is set), "
        "a demo app, a master and a slave on this machine; Ctrl-C stops everything.",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="start a local Valkey Cluster of 3 primaries (no replicas) instead of the single "
        "embedded server, and run master and slave on its redis+cluster:// address",
    )
    return parser.parse_args(argv)


def _up(args: argparse.Namespace) -> int:
    run = _LocalRun(cluster=args.cluster)
    # SIGTERM ends the run like Ctrl-C: through `finally`, which stops everything.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run.check_ports()
        redis_addr = run.start_redis()
        run.start_demo_app()
        master_port, slave_port = run.start_roles()
        print(
            f"\ngusher is running (Redis {redis_addr}).\n"
            f"  demo page:   http://127.0.0.1:{master_port}/demo?slave=127.0.0.1:{slave_port}\n"
            f"  push to it:  curl -X POST 'http://127.0.0.1:{master_port}/api/push/demo/demo/hello?data=hi+there'\n"
            f"  console:     http://127.0.0.1:{master_port}/ui\n"
            f"  slaves:      curl http://127.0.0.1:{master_port}/api/system/slaveinfos\n"
            f"  Redis:       redis-cli {run.redis_cli_arguments()}\n"
            f"  apps:        REDIS_ADDR={redis_addr} .venv/bin/gusher apps list\n"
            "Ctrl-C stops everything.\n",
            flush=True,
        )
        run.wait()
        return 1
    except ConfigError as exc:
        print(f"gusher up: {exc.reason}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        run.stop()


def sign_command(argv: list[str], now: float | None = None) -> str:
    """`gusher sign`: a curl line for a request signed with an app's secret.

    Example: `gusher sign --secret-file app.secret --json '{"data": {"n": 1}}'
    http://master:7999/api/push/myapp/news/created` prints a `curl` with the
    `X-Gusher-Timestamp` and `X-Gusher-Signature` headers (valid for
    ±GUSHER_SIGNATURE_TOLERANCE seconds).
    """
    parser = argparse.ArgumentParser(prog="gusher sign", description="Print a signed curl line.")
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument("--secret", help="the app's secret (visible in `ps`; prefer --secret-file)")
    secret.add_argument("--secret-file", help="a file holding the app's secret")
    parser.add_argument("-X", "--method", default="POST")
    body = parser.add_mutually_exclusive_group()
    body.add_argument("--json", help="a JSON body (sent as application/json)")
    body.add_argument("--form", help="an urlencoded form body, e.g. 'data=hello'")
    parser.add_argument("url")
    args = parser.parse_args(argv)
    key = args.secret if args.secret is not None else Path(args.secret_file).read_text().strip()
    payload = (args.json if args.json is not None else args.form or "").encode("utf-8")
    content_type = ""
    if args.json is not None:
        content_type = "application/json"
    elif args.form:
        content_type = "application/x-www-form-urlencoded"
    now = time.time() if now is None else now
    headers = signing.signed_headers(key, args.method, args.url, payload, now, content_type)
    if content_type:
        headers["Content-Type"] = content_type  # signed: curl must send exactly this
    # The signature covers the exact path, query and body, so curl must send them
    # untouched: --globoff (no `{a,b}` / `[1-3]` expansion), --path-as-is (no
    # `/../` squashing) and --data-raw (a body starting with `@` is not a file name).
    words = ["curl", "-sS", "--globoff", "--path-as-is", "-X", args.method.upper()]
    for name, value in headers.items():
        words += ["-H", f"{name}: {value}"]
    if payload:
        words += ["--data-raw", payload.decode("utf-8")]
    return shlex.join([*words, args.url])


_COMMANDS = """commands:
  master      the HTTP API (gunicorn wsgi_master:app), configured by .env
  slave       the WebSocket server (gunicorn -c gunicorn.conf.py wsgi_slave:app)
  up          everything on this machine, for real: embedded Redis unless REDIS_ADDR is
              set, a demo app, a master and a slave (what `make run` does);
              `gusher up --cluster`: a local 3-primary Valkey Cluster instead
  sign        print a curl line signed with an app's secret (`gusher sign --help`)
  apps        add, list, show, change, remove apps, rotate their secrets (`gusher apps --help`)
  push        publish one message to a channel (`gusher push --help`)
  stats       the live slaves and their counters

Installed by `make install` in .venv: run it as .venv/bin/gusher (or activate the venv)."""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `gusher` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="gusher",
        description=__doc__.splitlines()[0],
        epilog=_COMMANDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # The seed spells its flag `-env`; `--env` works too.
    parser.add_argument("-env", "--env", dest="env", metavar="FILE", help="the .env file (default ./.env)")
    commands = ("master", "slave", "up", "sign", "apps", "push", "stats")
    parser.add_argument("command", choices=commands, metavar="{" + ",".join(commands) + "}")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.env:
        os.environ["GUSHER_ENV_FILE"] = os.path.abspath(args.env)
    if args.command == "sign":
        print(sign_command(args.arguments))
        return 0
    if args.command in ("apps", "push", "stats"):
        from gusher import manage  # redis-py: not for `gusher sign`

        return manage.main([args.command, *args.arguments])
    if args.command == "up":
        return _up(_up_arguments(args.arguments))
    if args.arguments:
        parser.error(f"{args.command} takes no arguments: {' '.join(args.arguments)}")
    _exec_role(args.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())

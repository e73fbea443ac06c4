"""`gusher apps|push|stats`: manage apps, push and look at the slaves, against the configured Redis.

An app is the seed's hash `{app_key}` (its `url` field is the webhook), so
`redis-cli` still works; these commands check names and values, generate
secrets, and never print a secret unless asked to.

    gusher apps add myapp --url https://backend.example.com/gusher-auth [--secret]
    gusher apps list | show APP | set APP field=value… [--unset FIELD…] | remove APP | rotate-secret APP
    gusher push APP CHANNEL EVENT DATA [--json]
    gusher stats
"""

from __future__ import annotations

import argparse
import secrets
import sys
import urllib.parse
from typing import Any

import orjson

from gusher.broker.base import Broker
from gusher.broker.factory import create_broker
from gusher.config import Settings, load_settings
from gusher.core.apps import AppConfig, is_positive_whole
from gusher.core.publication import Publication
from gusher.errors import GusherError, RequestError, UnknownApp
from gusher.keys import check_name, pubsub_channel
from gusher.ops import heartbeat

# Fields `set` and `--unset` may touch; the rest of a hash is left alone.
FIELDS = ("url", "secret", "origins", "jwt_key", "history_size", "history_ttl")
_COUNTERS_SHOWN = ("connections", "subscriptions", "messages_in", "deliveries", "slow_consumer_drops")


def _check_url(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RequestError(f"url {url!r} is not an http(s) URL (the app's auth webhook)")
    return url


def _described(app: AppConfig, show_secret: bool) -> dict[str, Any]:
    secret = app.secret if show_secret else ("***" if app.secret else "")
    return {
        "app_key": app.key,
        "url": app.url,
        "secured": app.is_secured,
        "secret": secret,
        "origins": list(app.origins),
        "jwt": bool(app.jwt_key),
        "history": {"size": app.history.size, "ttl": app.history.ttl} if app.history else None,
    }


def _print(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def apps_add(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """Create an app; with --secret, one generated and printed once."""
    try:
        broker.apps.load(args.app)
        raise RequestError(f"app {args.app!r} exists already (use `gusher apps set`)")
    except UnknownApp:
        pass
    fields = {"url": _check_url(args.url)}
    if args.origins:
        fields["origins"] = " ".join(args.origins)
    if args.secret:
        fields["secret"] = secrets.token_hex(32)
    broker.apps.save(args.app, fields)
    _print(_described(broker.apps.load(args.app), show_secret=bool(args.secret)))
    return 0


def apps_list(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """Every app: key, webhook, how it is secured."""
    found = broker.apps.scan()
    for app in found:
        security = "jwt" if app.jwt_key else ("secret" if app.is_secured else "open")
        print(f"{app.key}\t{security}\t{app.url}")
    if not found:
        print("no apps (add one: gusher apps add APP --url URL)", file=sys.stderr)
    return 0


def apps_show(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """One app's record; its secret only with --show-secret."""
    _print(_described(broker.apps.load(args.app), args.show_secret))
    return 0


def apps_set(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """Set fields (`field=value`) and remove others (`--unset field`)."""
    broker.apps.load(args.app)
    fields = {}
    for assignment in args.assignments:
        name, sep, value = assignment.partition("=")
        if not sep or name not in FIELDS:
            raise RequestError(f"{assignment!r}: give field=value, field one of {', '.join(FIELDS)}")
        if name in ("history_size", "history_ttl") and not is_positive_whole(value):
            raise RequestError(f"{name} must be a whole number of at least 1 (unset it to keep no history)")
        fields[name] = _check_url(value) if name == "url" else value
    if "url" in args.unset:
        raise RequestError("an app is its `url` field: remove the app instead")
    if fields:
        broker.apps.save(args.app, fields)
    if args.unset:
        broker.apps.forget(args.app, args.unset)
    _print(_described(broker.apps.load(args.app), show_secret=False))
    return 0


def apps_remove(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """Delete an app's whole hash."""
    broker.apps.load(args.app)
    broker.apps.forget(args.app)
    print(f"removed {args.app}")
    return 0


def apps_rotate_secret(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """A new random secret, printed once; pushes signed with the old one fail from now on."""
    broker.apps.load(args.app)
    secret = secrets.token_hex(32)
    broker.apps.save(args.app, {"secret": secret})
    print(secret)
    return 0


def push(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """Publish one message as the master would (straight into Redis: no signature needed).

    For an app that keeps history it is numbered and kept too, as a push through the master is.
    """
    app = broker.apps.load(args.app)
    check_name("channel", args.channel)
    check_name("event", args.event)
    try:
        data = orjson.loads(args.data) if args.json else args.data
    except orjson.JSONDecodeError:
        raise RequestError("--json: DATA is not valid JSON") from None
    if data is None or data == "":
        raise RequestError("data is empty")
    publication = Publication.create(args.channel, args.event, data)
    positions = broker.publish([(pubsub_channel(args.app, args.channel), publication)], app.history)
    payload = publication.payload if not positions else publication.numbered_payload(positions[0][0])
    print(payload.decode())
    return 0


def stats(broker: Broker, args: argparse.Namespace, settings: Settings) -> int:
    """The live slaves and their counters (what /api/system/slaveinfos lists)."""
    infos = heartbeat.slave_infos(broker.status, settings.heartbeat_interval)
    print("slave\t" + "\t".join(_COUNTERS_SHOWN))
    totals = dict.fromkeys(_COUNTERS_SHOWN, 0)
    for slave_id, entry in sorted(infos.items()):
        print(slave_id + "\t" + "\t".join(str(entry.get(name, 0)) for name in _COUNTERS_SHOWN))
        for name in _COUNTERS_SHOWN:
            totals[name] += int(entry.get(name, 0))
    print(f"{len(infos)} slave(s)\t" + "\t".join(str(totals[name]) for name in _COUNTERS_SHOWN))
    return 0


def parser() -> argparse.ArgumentParser:
    """`gusher apps|push|stats` and their options."""
    top = argparse.ArgumentParser(prog="gusher", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    apps = commands.add_parser("apps", help="add, list, show, change or remove apps")
    verbs = apps.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="create an app")
    add.add_argument("app")
    add.add_argument("--url", required=True, help="the app's auth webhook")
    add.add_argument("--secret", action="store_true", help="generate a secret (printed once): signed pushes")
    add.add_argument("--origins", nargs="*", default=[], help="browser origins allowed to connect")
    add.set_defaults(run=apps_add)
    verbs.add_parser("list", help="every app").set_defaults(run=apps_list)
    show = verbs.add_parser("show", help="one app (its secret hidden)")
    show.add_argument("app")
    show.add_argument("--show-secret", action="store_true")
    show.set_defaults(run=apps_show)
    change = verbs.add_parser("set", help="set or remove fields of an app")
    change.add_argument("app")
    change.add_argument("assignments", nargs="*", metavar="field=value", help=f"fields: {', '.join(FIELDS)}")
    change.add_argument("--unset", nargs="*", default=[], choices=FIELDS, metavar="FIELD")
    change.set_defaults(run=apps_set)
    remove = verbs.add_parser("remove", help="delete an app")
    remove.add_argument("app")
    remove.set_defaults(run=apps_remove)
    rotate = verbs.add_parser("rotate-secret", help="a new secret, printed once")
    rotate.add_argument("app")
    rotate.set_defaults(run=apps_rotate_secret)
    send = commands.add_parser("push", help="publish one message to a channel")
    send.add_argument("app")
    send.add_argument("channel")
    send.add_argument("event")
    send.add_argument("data")
    send.add_argument("--json", action="store_true", help="DATA is a JSON value, delivered as such")
    send.set_defaults(run=push)
    commands.add_parser("stats", help="the live slaves and their counters").set_defaults(run=stats)
    return top


def main(argv: list[str]) -> int:
    """Run one of these commands; errors are one line on stderr and exit 1."""
    args = parser().parse_args(argv)
    settings = load_settings()
    broker = create_broker(settings, "gusher-cli")
    try:
        return int(args.run(broker, args, settings))
    except GusherError as exc:
        print(f"gusher {args.command}: {exc.reason}", file=sys.stderr)
        return 1

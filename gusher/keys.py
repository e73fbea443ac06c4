"""Redis key and pub/sub channel names, and the rules names must follow — pure.

The seed's layout is kept to the letter: the app is the hash `{app_key}`, its
messages travel on the pub/sub channel `{app_key}@{channel}`. Everything gusher
adds lives under `gusher:`.
"""

from __future__ import annotations

import binascii
import functools
import itertools
import string

from gusher.errors import InvalidName

APP_URL_FIELD = "url"
INTERNAL_PREFIX = "gusher:"
USER_PREFIX = "gusher:user:"
PRESENCE_PREFIX = "gusher:presence:"
HISTORY_PREFIX = "gusher:history:"
HISTORY_META_PREFIX = "gusher:history-meta:"
MEMBERS_PREFIX = "gusher:members:"
CACHE_PREFIX = "gusher:cache:"
SLAVES_INDEX = "gusher:slaves"
SLAVE_PREFIX = "gusher:slave:"

MAX_APP_KEY_LENGTH = 200
MAX_NAME_LENGTH = 200
CLUSTER_SLOTS = 16384


def _has_control_chars(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def check_app_key(app_key: str) -> str:
    """Return `app_key` if it can name an app, else raise `InvalidName`.

    `@` is refused because it separates app and channel in pub/sub names; the
    `gusher:` prefix is refused so that an app can never alias our own keys.
    """
    if not app_key:
        raise InvalidName("app_key is empty")
    if len(app_key) > MAX_APP_KEY_LENGTH:
        raise InvalidName(f"app_key is longer than {MAX_APP_KEY_LENGTH} characters")
    if "@" in app_key:
        raise InvalidName("app_key must not contain '@'")
    if app_key.startswith("gusher:"):
        raise InvalidName("app_key must not start with 'gusher:'")
    if _has_control_chars(app_key):
        raise InvalidName("app_key must not contain control characters")
    return app_key


def check_name(kind: str, value: str) -> str:
    """Return a channel or event name if it is usable, else raise `InvalidName`."""
    if not value:
        raise InvalidName(f"{kind} is empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidName(f"{kind} is longer than {MAX_NAME_LENGTH} characters")
    if _has_control_chars(value):
        raise InvalidName(f"{kind} must not contain control characters")
    return value


def pubsub_channel(app_key: str, channel: str) -> str:
    """The Redis pub/sub channel carrying `channel` of `app_key` (seed layout)."""
    return f"{app_key}@{channel}"


def split_pubsub_channel(name: str) -> tuple[str, str]:
    """Inverse of `pubsub_channel`: app keys never hold `@`, so split at the first."""
    app_key, _, channel = name.partition("@")
    return app_key, channel


def slave_key(slave_id: str) -> str:
    """The hash holding one slave's per-worker heartbeats (field = worker id)."""
    return SLAVE_PREFIX + slave_id


def server_key(role: str, server_id: str) -> str:
    """The hash of one server's per-worker heartbeats: `gusher:slave:…` or `gusher:master:…`."""
    return slave_key(server_id) if role == "slave" else f"{INTERNAL_PREFIX}{role}:{server_id}"


def servers_index(role: str) -> str:
    """The sorted set of a role's live servers by their last beat: `gusher:slaves`, `gusher:masters`."""
    return SLAVES_INDEX if role == "slave" else f"{INTERNAL_PREFIX}{role}s"


def user_channel(app_key: str, user_id: str) -> str:
    """The pub/sub channel carrying pushes to every connection of one user of an app.

    It lives under `gusher:` rather than `{app_key}@…`: a client channel may be
    named anything, so no spelling under `{app_key}@` is safe from a clash, and
    clients can never subscribe to it by name. App and user are separated by
    `@`, which no app key holds: with `:` (allowed in app keys) user `b:c` of
    app `a` and user `c` of app `a:b` would share one key, letting one app push
    into another's users.
    """
    return f"{USER_PREFIX}{app_key}@{user_id}"


def worker_channel(worker: int) -> str:
    """The pub/sub channel of one slave worker: pushes to one of its sockets (`{worker}.{number}`)."""
    return f"{INTERNAL_PREFIX}worker:{worker}"


def parse_socket_id(socket_id: str) -> tuple[int, int]:
    """`{worker}.{number}` → (worker, number); `InvalidName` for anything else.

    Digits and one dot only, as Pusher's socket ids (its server SDKs check
    `^\\d+\\.\\d+$`).
    """
    worker, dot, number = socket_id.partition(".")
    if len(socket_id) > 41:
        raise InvalidName("socket_id is too long")
    if not (dot and worker.isdigit() and number.isdigit() and worker.isascii() and number.isascii()):
        raise InvalidName("socket_id must be two numbers joined by a dot, as `123.45`")
    return int(worker), int(number)


def presence_key(app_key: str) -> str:
    """The hash where every slave worker keeps its presence snapshot of one app."""
    return PRESENCE_PREFIX + app_key


def is_internal(key: str) -> bool:
    """Whether a pub/sub key is gusher's own (user channels), not a client's `{app}@{channel}`."""
    return key.startswith(INTERNAL_PREFIX)


def is_targetable_user(user_id: str) -> bool:
    """Whether pushes may address `user_id`: non-empty, bounded, no control characters."""
    return 0 < len(user_id) <= MAX_NAME_LENGTH and not _has_control_chars(user_id)


def history_keys(pubsub: str) -> tuple[str, str]:
    """The stream and the meta hash of a history channel, by its pub/sub key `{app_key}@{channel}`."""
    return HISTORY_PREFIX + pubsub, HISTORY_META_PREFIX + pubsub


def cluster_history_keys(pubsub: str) -> tuple[str, str]:
    """`history_keys` in a Redis Cluster: the same prefixes, the names `colocated` with the channel.

    The history script SPUBLISHes on the channel, which a cluster allows only
    in the slot of the script's keys. On one server the names stay
    untagged: renaming them would restart every channel's numbering under a
    new epoch at an upgrade, and a single server has no slots to share.
    """
    return colocated(HISTORY_PREFIX, pubsub), colocated(HISTORY_META_PREFIX, pubsub)


def members_keys(pubsub: str) -> tuple[str, str, str]:
    """A Pusher presence channel's hashes, by its pub/sub key: members (user id → user info),
    connection counts (user id → n) and connections (`{worker}.{number}` → user id).

    All three in the channel's own cluster slot (`colocated`), where their script publishes."""
    return (
        colocated(MEMBERS_PREFIX, pubsub),
        colocated(MEMBERS_PREFIX + "n:", pubsub),
        colocated(MEMBERS_PREFIX + "c:", pubsub),
    )


def worker_members_key(worker: int) -> str:
    """The set of `{pubsub key} {socket id}` a slave worker joined to presence channels (crash sweep)."""
    return f"{MEMBERS_PREFIX}worker:{worker}"


MEMBER_WORKERS = MEMBERS_PREFIX + "workers"  # the set of workers with presence members


def worker_alive_key(worker: int) -> str:
    """Exists while a slave worker that keeps presence members, occupied channels or subscriber
    counts in Redis lives (refreshed every half heartbeat interval; others sweep it once gone)."""
    return f"{MEMBERS_PREFIX}alive:{worker}"


def cache_key(pubsub: str) -> str:
    """The last event of a Pusher cache channel (`cache-…`, `private-cache-…`, …), by its pub/sub key."""
    return CACHE_PREFIX + pubsub


OCCUPANCY_PREFIX = "gusher:occupancy:"
OCCUPANCY_WORKERS = OCCUPANCY_PREFIX + "workers"  # the set of workers that occupy channels


def occupancy_key(pubsub: str) -> str:
    """The set of slave worker ids with a subscriber on a channel, by its pub/sub key (Pusher's
    channel_occupied/channel_vacated across slaves). Hash-tagged like `members_keys`."""
    return OCCUPANCY_PREFIX + "{" + pubsub + "}"


def worker_occupancy_key(worker: int) -> str:
    """The set of pub/sub keys a slave worker occupies (crash sweep)."""
    return f"{OCCUPANCY_PREFIX}worker:{worker}"


SUBSCRIPTION_COUNT_PREFIX = "gusher:subscriptions:"
SUBSCRIPTION_COUNT_WORKERS = SUBSCRIPTION_COUNT_PREFIX + "workers"  # workers that count channels


def subscription_count_keys(pubsub: str) -> tuple[str, str]:
    """A channel's subscriber counts per slave worker (hash) and their kept total, by pub/sub key
    (Pusher's subscription_count), in the channel's cluster slot like `members_keys`."""
    return colocated(SUBSCRIPTION_COUNT_PREFIX, pubsub), colocated(
        SUBSCRIPTION_COUNT_PREFIX + "total:", pubsub
    )


def worker_subscription_counts_key(worker: int) -> str:
    """The set of pub/sub keys a slave worker counts subscribers of (crash sweep)."""
    return f"{SUBSCRIPTION_COUNT_PREFIX}worker:{worker}"


# -- Redis Cluster slots ---------------------------------------------------------------


def hashed_part(name: str) -> bytes:
    """What Redis Cluster hashes of a key or shard channel: the first non-empty `{…}`, else all."""
    raw = name.encode("utf-8", "surrogateescape")
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            return raw[start + 1 : end]
    return raw


def key_slot(name: str) -> int:
    """The cluster slot of a key or shard channel (CRC16-XMODEM of `hashed_part`, mod 16384)."""
    return binascii.crc_hqx(hashed_part(name), 0) % CLUSTER_SLOTS


def colocated(prefix: str, pubsub: str) -> str:
    """A key named after the pub/sub key `pubsub`, in the cluster slot of that channel.

    A script may SPUBLISH only in its keys' slot. `prefix{pubsub}` is in the
    channel's slot whenever `pubsub` holds no `}`: the tag is then the whole
    name, and the channel, having no complete tag either, hashes whole.
    Every Pusher channel is such a name (no braces in its charset), and so
    are these keys' names from before clusters. Any other name gets a tag
    of the same slot in front of it (`slot_tag`); the name follows the tag,
    so two channels never share a key.
    """
    if "}" not in pubsub:
        return prefix + "{" + pubsub + "}"
    return prefix + "{" + slot_tag(key_slot(pubsub)) + "}" + pubsub


_TAG_ALPHABET = string.ascii_letters + string.digits


@functools.lru_cache(maxsize=1024)
def slot_tag(slot: int) -> str:
    """The shortest alphanumeric string (first in order) that hashes to `slot`.

    Strings of up to three characters cover every slot (238,328 of them for
    16,384 slots); the search looks at ~16k of them, about 10 ms, once per slot.
    """
    for length in (1, 2, 3, 4):
        for chars in itertools.product(_TAG_ALPHABET, repeat=length):
            tag = "".join(chars)
            if binascii.crc_hqx(tag.encode(), 0) % CLUSTER_SLOTS == slot:
                return tag
    raise AssertionError(f"no tag hashes to slot {slot}")  # pragma: no cover: 4 characters cover all

"""Pusher Channels' rules that both roles share: channel kinds, names and signatures — pure.

Channel kinds go by name prefix, as in pusher-js (`channels.ts createChannel`)
and Pusher's servers: `private-encrypted-` and `private-` need a channel
signature, `presence-` one over the member's `channel_data` too, and a
`cache-` part (`cache-`, `private-cache-`, `private-encrypted-cache-`,
`presence-cache-`) keeps the channel's last event for new subscribers. An
encrypted channel is relayed like a private one: the server never sees its
key (research wave2 §1.5).

Signatures are `{app_key}:{hex HMAC-SHA256(secret, text)}`, where the text is
`{socket_id}:{channel}` (private), `{socket_id}:{channel}:{channel_data}`
(presence) or `{socket_id}::user::{user_data}` (sign-in), exactly as
pusher-http-python's and pusher-http-node's `authenticate` compute them.
They are compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from gusher.core.publication import MEMBER_CONTROL, Publication

PRIVATE_PREFIX = "private-"
ENCRYPTED_PREFIX = "private-encrypted-"
PRESENCE_PREFIX = "presence-"
USER_CHANNEL_PREFIX = "#server-to-user-"
CLIENT_EVENT_PREFIX = "client-"
_CACHE_PREFIXES = ("cache-", "private-cache-", "private-encrypted-cache-", "presence-cache-")

# Pusher's channel names (pusher-http-python util.py, pusher-http-node): at most 200 of these.
CHANNEL_NAME = re.compile(r"\A[-a-zA-Z0-9_=@,.;]{1,200}\Z")
EVENT_NAME_MAX = 200
SOCKET_ID = re.compile(r"\A\d{1,20}\.\d{1,20}\Z")
# Pusher's presence limits (pusher.md: 100 members, 128-character ids, 1 KB of user info).
MAX_USER_ID_LENGTH = 128
MAX_USER_INFO_BYTES = 1024
# How long a cache channel's last event is kept (soketi's and Sockudo's `cacheTtl`).
CACHE_SECONDS = 3600


def needs_signature(channel: str) -> bool:
    """Private, encrypted and presence channels: a subscribe carries the app's signature."""
    return channel.startswith((PRIVATE_PREFIX, PRESENCE_PREFIX))


def is_presence(channel: str) -> bool:
    """A presence channel: its subscribers are members, with `channel_data`."""
    return channel.startswith(PRESENCE_PREFIX)


def is_encrypted(channel: str) -> bool:
    """An end-to-end encrypted channel: relayed, never decrypted; no client events."""
    return channel.startswith(ENCRYPTED_PREFIX)


def is_cache(channel: str) -> bool:
    """A cache channel: its last event is kept and replayed to each new subscriber."""
    return channel.startswith(_CACHE_PREFIXES)


def allows_client_events(channel: str) -> bool:
    """Client events travel on private and presence channels only, never on encrypted ones."""
    return needs_signature(channel) and not is_encrypted(channel)


def is_channel_name(channel: str) -> bool:
    """Pusher's channel charset and length (`#server-to-user-{id}` is the server's own)."""
    return bool(CHANNEL_NAME.match(channel))


def is_user_channel(channel: str) -> bool:
    """`#server-to-user-{user id}`: what pusher-js subscribes to once signed in."""
    user = channel[len(USER_CHANNEL_PREFIX) :]
    return channel.startswith(USER_CHANNEL_PREFIX) and 0 < len(user) <= MAX_USER_ID_LENGTH


def sign(secret: str, text: str) -> str:
    """hex HMAC-SHA256 of `text` with the app's `secret`."""
    key = secret.encode("utf-8", "surrogateescape")
    return hmac.new(key, text.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def channel_text(socket_id: str, channel: str, channel_data: str | None = None) -> str:
    """What a private (no `channel_data`) or presence channel signature signs."""
    if channel_data is None:
        return f"{socket_id}:{channel}"
    return f"{socket_id}:{channel}:{channel_data}"


def user_text(socket_id: str, user_data: str) -> str:
    """What a sign-in signature signs."""
    return f"{socket_id}::user::{user_data}"


def signature_matches(auth: str, app_key: str, secret: str, text: str) -> bool:
    """Whether `auth` is `{app_key}:{sign(secret, text)}`, compared in constant time.

    An app without a secret can sign nothing, so nothing matches.
    """
    if not secret or not isinstance(auth, str):
        return False
    key, colon, signature = auth.partition(":")
    expected = sign(secret, text)
    key_ok = hmac.compare_digest(key.encode("utf-8", "replace"), app_key.encode("utf-8", "replace"))
    signature_ok = hmac.compare_digest(signature.encode("utf-8", "replace"), expected.encode())
    return bool(colon) and key_ok and signature_ok


MEMBER_ADDED = "pusher_internal:member_added"
MEMBER_REMOVED = "pusher_internal:member_removed"


def member_events_after(members: Iterable[str], buffered: Iterable[Publication]) -> list[Publication]:
    """What of a presence channel's messages buffered during a join follows its member list.

    The join's list (`subscription_succeeded`) is read in the same script that
    adds the member, but pub/sub brings the channel's earlier member events
    late: one published just before the join can arrive while it runs, and
    would tell the new member that someone it was just told is there has
    come again. So, in order from the list: a member_added of someone
    present, or a member_removed of someone absent, is dropped; every other
    message is kept.
    """
    present = set(members)
    kept = []
    for publication in buffered:
        if publication.control == MEMBER_CONTROL and isinstance(publication.data, dict):
            user = str(publication.data.get("user_id", ""))
            if publication.event == MEMBER_ADDED:
                if user in present:
                    continue
                present.add(user)
            elif publication.event == MEMBER_REMOVED:
                if user not in present:
                    continue
                present.discard(user)
        kept.append(publication)
    return kept

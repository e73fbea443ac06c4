"""A Publication: one message on one channel, and its Redis payload — pure.

The Redis layout (SPEC) fixes the payload published on `{app_key}@{channel}`:
the JSON a gusher-protocol client receives, `{"channel","event","data"}` in
that key order. Backends and `redis-cli` publish there directly, so the
payload is the contract, whoever produced it; a Publication is that message
once a worker has read it, ready for every client protocol to encode.

- The master builds one with `Publication.create`, which encodes its payload
  once (the push's HTTP answer is the same bytes).
- A slave worker builds one per message it receives with
  `Publication.parse`: one parse per message per worker, never per
  subscriber.
- A raw `PUBLISH` of anything else that is valid UTF-8 (not JSON, or JSON of
  another shape) is kept as it came (`is_common` is False): the seed delivers
  such payloads to its clients unchanged, and so does gusher's protocol.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from gusher.core import exactjson

# Routing fields (see `Publication.create`).
SOCKET_FIELD = "gusher_socket"
CONTROL_FIELD = "gusher_control"
# The one connection a channel message skips (Pusher's `socket_id` exclusion; issue 13).
EXCEPT_FIELD = "gusher_except"
# Who sent a client event on a presence channel (Pusher's top-level `user_id`; issue 13).
USER_ID_FIELD = "user_id"
# The number of a message in its channel's history (SPEC: the one field history adds).
OFFSET_FIELD = "offset"
# The control of a message that changes a user's allowed channels (gusher.api.pushes, gusher.edge.hub).
CHANNELS_CONTROL = "channels"
# The control of a presence channel's member_added / member_removed: only Pusher clients see it.
MEMBER_CONTROL = "member"
# The control of a channel's `pusher_internal:subscription_count`: only Pusher clients see it.
COUNT_CONTROL = "count"
# The control of a message on a user's channel that closes every connection of the user (Pusher's
# terminate_connections; Pusher clients get the close code 4009).
TERMINATE_CONTROL = "terminate"


# A `data` of these types came out of orjson exactly (it rounds only integers beyond 64 bits,
# into floats), so the payload needs no scan for long integers (`exactjson`).
_EXACT_DATA_TYPES = (str, int, bool, type(None))


class Publication(NamedTuple):
    """One message of a channel.

    A named tuple: immutable, and built in ~0.25 µs where a frozen dataclass
    took ~1.1 µs (its `__init__` sets each field through
    `object.__setattr__`). A slave worker builds one per message it receives,
    which with one subscriber per channel is one per delivery (issue 16).

    Attributes:
        channel: the `channel` field of the message (for a user push, the name
            the push gave it, not the Redis key it travelled on); "" when the
            payload is not a common message.
        event: the `event` field; "" when the payload is not a common message.
        data: the `data` field, any JSON value (the seed's pushes: a string).
        payload: the exact bytes published in Redis, valid UTF-8.
        socket: `{app_key}@{number}` of the one connection a socket push is for, else "".
        control: what the slaves do with the message before delivering it, else "".
        offset: its number in the channel's history (issue 12), else 0.
        exclude: the socket id (`{worker}.{number}`) that does not receive it, else "".
        user_id: the sender of a client event on a presence channel, else "".
    """

    channel: str
    event: str
    data: Any
    payload: bytes
    socket: str = ""
    control: str = ""
    offset: int = 0
    exclude: str = ""
    user_id: str = ""

    @property
    def head(self) -> bytes:
        """The payload without its closing brace: the history script appends `,"offset":N}`."""
        return self.payload[:-1]

    def numbered_payload(self, offset: int) -> bytes:
        """The payload as the history script publishes and keeps it, with its `offset` (SPEC)."""
        return self.head + b',"offset":%d}' % offset

    @classmethod
    def create(
        cls,
        channel: str,
        event: str,
        data: Any,
        socket: str = "",
        control: str = "",
        exclude: str = "",
        user_id: str = "",
    ) -> Publication:
        """The message a push publishes, its payload encoded once, in the seed's key order.

        Routing fields ride along only on the messages that need them, and
        clients never see them: `socket` (`{app_key}@{number}`) on a push to
        one socket (it travels on its worker's channel), `control` on a
        message the slaves act on before delivering it (`"channels"`: a user's
        allowed channels change; `"member"`: a presence member came or went),
        `exclude` on a channel message one connection must not receive (the
        sender of a client event, or the `socket_id` a Pusher trigger names).
        `user_id` is Pusher's field of a presence client event: clients see it.
        """
        message = {"channel": channel, "event": event, "data": data}
        if socket:
            message[SOCKET_FIELD] = socket
        if control:
            message[CONTROL_FIELD] = control
        if exclude:
            message[EXCEPT_FIELD] = exclude
        if user_id:
            message[USER_ID_FIELD] = user_id
        return cls(channel, event, data, exactjson.dumps(message), socket, control, 0, exclude, user_id)

    @property
    def client_payload(self) -> bytes:
        """The payload a gusher client receives: as published, less a routing `exclude`."""
        if not self.exclude:
            return self.payload
        message: dict[str, Any] = {"channel": self.channel, "event": self.event, "data": self.data}
        if self.user_id:
            message[USER_ID_FIELD] = self.user_id
        if self.offset:
            message[OFFSET_FIELD] = self.offset
        return exactjson.dumps(message)

    @classmethod
    def parse(cls, payload: bytes) -> Publication | None:
        """Read a payload received from Redis; None when it is not UTF-8 (never delivered).

        A payload that is not a common message `{"channel": str, "event": str,
        "data": …}` is kept whole with empty fields, so it still reaches the
        clients that receive payloads as they are.
        """
        try:
            message = orjson.loads(payload)
        except orjson.JSONDecodeError:
            if not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    return None
            return cls("", "", None, payload)
        if isinstance(message, dict):
            channel, event = message.get("channel"), message.get("event")
            if isinstance(channel, str) and isinstance(event, str) and event and "data" in message:
                offset = message.get(OFFSET_FIELD)
                if type(message["data"]) not in _EXACT_DATA_TYPES or type(offset) is float:
                    message = exactjson.loads(payload)  # a float may be an integer orjson rounded
                    offset = message.get(OFFSET_FIELD)
                socket, control = message.get(SOCKET_FIELD), message.get(CONTROL_FIELD)
                exclude = message.get(EXCEPT_FIELD)
                user_id = message.get(USER_ID_FIELD)
                return cls(
                    channel,
                    event,
                    message["data"],
                    payload,
                    socket if isinstance(socket, str) else "",
                    control if isinstance(control, str) else "",
                    offset if isinstance(offset, int) and not isinstance(offset, bool) and offset > 0 else 0,
                    exclude if isinstance(exclude, str) else "",
                    user_id if isinstance(user_id, str) else "",
                )
        return cls("", "", None, payload)

    @property
    def is_common(self) -> bool:
        """Whether the payload is the common message (a raw `PUBLISH` may be anything)."""
        return bool(self.event)


# A publication and the pub/sub key it travels on: `{app_key}@{channel}`, or a
# user channel (`gusher.keys`).
Routed = tuple[str, Publication]

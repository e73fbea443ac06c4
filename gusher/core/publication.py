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

from dataclasses import dataclass
from typing import Any

from gusher.core import exactjson

# Routing fields (see `Publication.create`).
SOCKET_FIELD = "gusher_socket"
CONTROL_FIELD = "gusher_control"
# The number of a message in its channel's history (SPEC: the one field history adds).
OFFSET_FIELD = "offset"
# The control of a message that changes a user's allowed channels (gusher.api.pushes, gusher.edge.hub).
CHANNELS_CONTROL = "channels"


@dataclass(frozen=True, slots=True)
class Publication:
    """One message of a channel.

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
    """

    channel: str
    event: str
    data: Any
    payload: bytes
    socket: str = ""
    control: str = ""
    offset: int = 0

    @property
    def head(self) -> bytes:
        """The payload without its closing brace: the history script appends `,"offset":N}`."""
        return self.payload[:-1]

    def numbered_payload(self, offset: int) -> bytes:
        """The payload as the history script publishes and keeps it, with its `offset` (SPEC)."""
        return self.head + b',"offset":%d}' % offset

    @classmethod
    def create(cls, channel: str, event: str, data: Any, socket: str = "", control: str = "") -> Publication:
        """The message a push publishes, its payload encoded once, in the seed's key order.

        Routing fields ride along only on the messages that need them, and
        clients never see them: `socket` (`{app_key}@{number}`) on a push to
        one socket (it travels on its worker's channel), `control` on a
        message the slaves act on before delivering it (`"channels"`: a user's
        allowed channels change).
        """
        message = {"channel": channel, "event": event, "data": data}
        if socket:
            message[SOCKET_FIELD] = socket
        if control:
            message[CONTROL_FIELD] = control
        return cls(channel, event, data, exactjson.dumps(message), socket, control)

    @classmethod
    def parse(cls, payload: bytes) -> Publication | None:
        """Read a payload received from Redis; None when it is not UTF-8 (never delivered).

        A payload that is not a common message `{"channel": str, "event": str,
        "data": …}` is kept whole with empty fields, so it still reaches the
        clients that receive payloads as they are.
        """
        try:
            message = exactjson.loads(payload)
        except exactjson.JSONDecodeError:
            if not payload.isascii():
                try:
                    payload.decode("utf-8")
                except UnicodeDecodeError:
                    return None
            return cls("", "", None, payload)
        if isinstance(message, dict):
            channel, event = message.get("channel"), message.get("event")
            if isinstance(channel, str) and isinstance(event, str) and event and "data" in message:
                socket, control = message.get(SOCKET_FIELD), message.get(CONTROL_FIELD)
                offset = message.get(OFFSET_FIELD)
                return cls(
                    channel,
                    event,
                    message["data"],
                    payload,
                    socket if isinstance(socket, str) else "",
                    control if isinstance(control, str) else "",
                    offset if isinstance(offset, int) and not isinstance(offset, bool) and offset > 0 else 0,
                )
        return cls("", "", None, payload)

    @property
    def is_common(self) -> bool:
        """Whether the payload is the common message (a raw `PUBLISH` may be anything)."""
        return bool(self.event)


# A publication and the pub/sub key it travels on: `{app_key}@{channel}`, or a
# user channel (`gusher.keys`).
Routed = tuple[str, Publication]

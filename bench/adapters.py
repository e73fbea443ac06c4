"""Protocol adapters: what the load generator says after the WebSocket opens — pure.

One client, several servers: the generator owns sockets, framing, pings and
timestamps; an adapter only knows the URL to ask for, the text messages that
join the connection's channels, and how to classify each text message the
server sends. Pushed messages of every system carry the same marker
`B|<seq>|<sent_ns>|` inside their data, which the generator finds itself.
"""

from __future__ import annotations

import json
import time
import urllib.parse

ACK, OTHER, REFUSED = 1, 0, -1


class GusherAdapter:
    """gusher's protocol: auth in the URL, one `gusher.subscribe` per channel."""

    name = "gusher"

    def __init__(self, app_key: str) -> None:
        self.app_key = app_key

    def path(self, index: int, channels: list[str]) -> str:
        token = f"allow:u{index}:{','.join(channels)}"
        return f"/ws/{self.app_key}?auth={urllib.parse.quote(token, safe='')}"

    def opening(self, channels: list[str]) -> list[bytes]:
        return [
            json.dumps({"event": "gusher.subscribe", "data": {"id": str(i), "channel": c}}).encode()
            for i, c in enumerate(channels)
        ]

    def on_text(self, payload: bytes, channels: list[str]) -> tuple[int, list[bytes]]:
        if b'"gusher.subscribe_succeeded"' in payload:
            return ACK, []
        if b'"gusher.subscribe_error"' in payload:
            return REFUSED, []
        return OTHER, []


class JWTAdapter(GusherAdapter):
    """gusher's protocol with a JWT in the URL instead of the webhook's token (the app's `jwt_key`).

    Each client's token (HS256, its user and channels) is signed here, in the
    load generator, before it connects: the slave verifies it locally and calls
    no webhook, so the connect rate is the handshake's own.
    """

    name = "gusher+jwt"

    def __init__(self, app_key: str, jwt_key: str) -> None:
        super().__init__(app_key)
        self.jwt_key = jwt_key

    def path(self, index: int, channels: list[str]) -> str:
        import jwt  # PyJWT, gusher's own dependency for JWT connections

        claims = {"user_id": f"u{index}", "channels": channels, "exp": int(time.time()) + 3600}
        token = jwt.encode(claims, self.jwt_key, algorithm="HS256")
        return f"/ws/{self.app_key}?auth={urllib.parse.quote(token, safe='')}"


class PusherAdapter:
    """Pusher Channels protocol 7 at `/app/{app_key}`, as pusher-js speaks it (public channels).

    Sequence: server `pusher:connection_established` → client one
    `pusher:subscribe` per channel → server
    `pusher_internal:subscription_succeeded` per channel. Subscribing waits
    for the greeting, as pusher-js does. A pushed message is
    `{"event","channel","data":"<the string pushed>"}`: the marker sits in the
    data string as in every system's. The server's `pusher:ping` to a quiet
    client is answered with `pusher:pong`, as pusher-js answers it.
    """

    name = "pusher"

    # pusher-js 8's query; the server refuses a protocol other than 7 (close 4007).
    QUERY = "?protocol=7&client=js&version=8.4.0&flash=false"
    PONG = b'{"event":"pusher:pong","data":{}}'

    def __init__(self, app_key: str) -> None:
        self.app_key = app_key

    def path(self, index: int, channels: list[str]) -> str:
        return f"/app/{urllib.parse.quote(self.app_key, safe='')}{self.QUERY}"

    def opening(self, channels: list[str]) -> list[bytes]:
        return []

    def on_text(self, payload: bytes, channels: list[str]) -> tuple[int, list[bytes]]:
        if b'"pusher_internal:subscription_succeeded"' in payload:
            return ACK, []
        if b'"pusher:ping"' in payload:
            return OTHER, [self.PONG]
        if b'"pusher:connection_established"' in payload:
            return OTHER, [self.subscribe(c) for c in channels]
        if b'"pusher:subscription_error"' in payload or b'"pusher:error"' in payload:
            return REFUSED, []
        return OTHER, []

    @staticmethod
    def subscribe(channel: str) -> bytes:
        """`pusher:subscribe` for a public channel (`auth` empty, as pusher-js sends it)."""
        return json.dumps(
            {"event": "pusher:subscribe", "data": {"channel": channel, "auth": ""}}, separators=(",", ":")
        ).encode()


class SocketIOAdapter:
    """Socket.IO v4 (Engine.IO 4) over a bare WebSocket, rooms joined with a `join` event.

    Sequence: server `0{...}` (open) → client `40` → server `40{"sid"}` →
    client `42["join","<room>"]` per room → server `42["joined","<room>"]`.
    Engine.IO pings are the text `2`, answered with `3`.
    """

    name = "socketio"

    def path(self, index: int, channels: list[str]) -> str:
        return "/socket.io/?EIO=4&transport=websocket"

    def opening(self, channels: list[str]) -> list[bytes]:
        return []

    def on_text(self, payload: bytes, channels: list[str]) -> tuple[int, list[bytes]]:
        if payload == b"2":
            return OTHER, [b"3"]
        if payload.startswith(b'42["joined"'):
            return ACK, []
        if payload.startswith(b"40"):
            return OTHER, [b'42["join",%s]' % json.dumps(c).encode() for c in channels]
        if payload.startswith(b"0{"):
            return OTHER, [b"40"]
        if payload.startswith(b"44") or payload.startswith(b"41"):
            return REFUSED, []
        return OTHER, []


class BareAdapter:
    """The limit baseline: the connection is ready as soon as it is upgraded."""

    name = "bare"

    def path(self, index: int, channels: list[str]) -> str:
        return "/ws/limit"

    def opening(self, channels: list[str]) -> list[bytes]:
        return []

    def on_text(self, payload: bytes, channels: list[str]) -> tuple[int, list[bytes]]:
        return OTHER, []


class NchanAdapter:
    """nchan's WebSocket subscriber: the channels are in the URL, nothing is said after the upgrade.

    `GET /sub/<channel>[,<channel>…]` (the bench's nginx.conf splits the id on
    `,` to multiplex several channels on one connection); the connection is
    subscribed once upgraded. A published message arrives as a text frame
    holding exactly the body that was POSTed, so the marker is at its start.
    """

    name = "nchan"

    def path(self, index: int, channels: list[str]) -> str:
        return "/sub/" + ",".join(urllib.parse.quote(c, safe="") for c in channels)

    def opening(self, channels: list[str]) -> list[bytes]:
        return []

    def on_text(self, payload: bytes, channels: list[str]) -> tuple[int, list[bytes]]:
        return OTHER, []


Adapter = GusherAdapter | JWTAdapter | PusherAdapter | SocketIOAdapter | BareAdapter | NchanAdapter


def make_adapter(spec: dict) -> Adapter:
    """Build an adapter from a picklable spec such as `{"kind": "gusher", "app_key": "a"}`."""
    kind = spec["kind"]
    if kind == "gusher":
        return GusherAdapter(spec["app_key"])
    if kind == "jwt":
        return JWTAdapter(spec["app_key"], spec["jwt_key"])
    if kind == "pusher":
        return PusherAdapter(spec["app_key"])
    if kind == "socketio":
        return SocketIOAdapter()
    if kind == "bare":
        return BareAdapter()
    if kind == "nchan":
        return NchanAdapter()
    raise ValueError(f"unknown adapter {kind!r}")


def needs_acks(adapter: object) -> bool:
    """Whether a connection is ready only after one ACK per channel (not when subscribing is
    the upgrade itself: the limit's, nchan's)."""
    return not isinstance(adapter, (BareAdapter, NchanAdapter))


class GusherResume:
    """One gusher client's place in its history channels, and what it missed or got twice — pure.

    `bench.storm` attaches one to each client (the connect spec's `"resume"`):
    the first `gusher.subscribe_succeeded` of a channel gives its offset and
    epoch; every numbered message moves the client's place on, so a
    resubscribe asks for exactly what follows it (`since`, SPEC "History and
    recovery"). Offsets are checked in order: one below the place is a
    duplicate, a jump over it counts the offsets skipped as missing; `finish`
    adds those never received up to the channel's last offset.
    """

    __slots__ = ("duplicate", "epoch", "missing", "not_recovered", "place", "recovered", "unplaced")

    def __init__(self, channels: list[str]) -> None:
        self.epoch = dict.fromkeys(channels, "")
        self.place = dict.fromkeys(channels, 0)  # the last offset received (or the subscribe's)
        self.missing = self.duplicate = self.recovered = self.not_recovered = self.unplaced = 0

    def opening(self, channels: list[str]) -> list[bytes]:
        """One `gusher.subscribe` per channel, with `since` once the channel's epoch is known."""
        out = []
        for i, channel in enumerate(channels):
            data: dict = {"id": str(i), "channel": channel}
            if self.epoch.get(channel):
                data["since"] = {"offset": self.place[channel], "epoch": self.epoch[channel]}
            out.append(json.dumps({"event": "gusher.subscribe", "data": data}).encode())
        return out

    def on_subscribed(self, payload: bytes) -> None:
        """A `gusher.subscribe_succeeded`: place the channel (first time) or check the resume."""
        data = json.loads(payload).get("data") or {}
        channel, offset, epoch = data.get("channel"), data.get("offset"), data.get("epoch")
        if channel not in self.place or not isinstance(offset, int):
            return
        recovered = data.get("recovered")
        if recovered is True:
            self.recovered += 1  # every message after our place follows the reply
        elif self.epoch[channel]:  # resumed but not recovered: what lies between is lost
            self.not_recovered += 1
            if epoch == self.epoch[channel]:
                self.missing += max(0, offset - self.place[channel])
            self.place[channel] = offset
        else:
            self.place[channel] = offset
        self.epoch[channel] = epoch or ""

    def on_message(self, payload: bytes) -> None:
        """A pushed message `{"channel", …, "offset": N}`: move the channel's place on."""
        message = json.loads(payload)
        channel, offset = message.get("channel"), message.get("offset")
        if channel not in self.place or not self.epoch[channel] or not isinstance(offset, int):
            self.unplaced += 1  # before the channel's subscribe was answered
            return
        place = self.place[channel]
        if offset <= place:
            self.duplicate += 1
            return
        self.missing += offset - place - 1
        self.place[channel] = offset

    def finish(self, last: dict[str, int]) -> tuple[int, int]:
        """(missing, duplicate) once every channel's last offset is `last[channel]`."""
        tail = sum(max(0, last.get(c, 0) - place) for c, place in self.place.items())
        return self.missing + tail, self.duplicate

"""A fast auth webhook for the benchmarks: `python -m bench.webhook PORT`.

The slave calls the webhook for every new connection, so a slow webhook would
make the connect-rate scenario measure the webhook instead of gusher. This one
is a bare asyncio protocol (HTTP/1.1 keep-alive, no framework) answering the
test webhook's tokens: `allow:<user>:<ch1>,<ch2>` → 200 with those channels,
anything else → 403.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse


def answer(body: bytes) -> bytes:
    """The complete HTTP response for one form body `auth=<token>` — pure."""
    form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    kind, _, rest = form.get("auth", [""])[0].partition(":")
    if kind == "allow":
        user, _, channels = rest.partition(":")
        status, payload = "200 OK", json.dumps({"user_id": user, "channels": channels.split(",")}).encode()
    else:
        status, payload = "403 Forbidden", b'{"error": "unknown token"}'
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def next_request(buf: bytes) -> tuple[bytes, bytes, bytes] | None:
    """The first whole request in `buf` (a head and its Content-Length body): (head, body, rest),
    or None while it is not all there — pure."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head, length = buf[:end], 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if len(buf) < end + 4 + length:
        return None
    return head, buf[end + 4 : end + 4 + length], buf[end + 4 + length :]


class _Protocol(asyncio.Protocol):
    """Parses pipelined requests with a Content-Length body; nothing more."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while (request := next_request(self.buf)) is not None:
            _, body, self.buf = request
            self.transport.write(answer(body))  # type: ignore[attr-defined]


async def _serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Protocol, "127.0.0.1", port, backlog=4096, reuse_port=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(_serve(int(sys.argv[1])))

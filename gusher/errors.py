"""The one exception tree of gusher, and what each error means on the wire.

::

    GusherError
    ├── ConfigError            bad settings; raised at start, never at run time
    ├── RequestError           the caller sent something wrong          HTTP 400
    │   ├── InvalidName        app key / channel / event malformed      HTTP 400
    │   ├── UnknownApp         no `url` field in the app's hash         HTTP 400 (401 on /ws)
    │   ├── PayloadTooLarge    a body or parameter over its bound       HTTP 413
    │   └── RequestTimeout     a request's body did not arrive in time  HTTP 408
    ├── AuthError              a caller could not prove who it is       HTTP 401
    │   ├── WebhookError       the app's webhook failed or said no      HTTP 401
    │   ├── TokenError         a JWT is forged, expired or unusable     HTTP 401
    │   └── SignatureError     an API request is unsigned, mis-signed,  HTTP 401
    │                          stale, or lacks the admin token
    ├── Forbidden              known caller, not allowed (e.g. origin)  HTTP 403
    ├── OverQuota              an app's connection quota is full         HTTP 429 / close 4004
    ├── HandshakeError         not a valid WebSocket upgrade            HTTP 400 / 426
    ├── BackendUnavailable     Redis cannot be reached                  HTTP 503
    ├── ProtocolError          a client broke RFC 6455 or our limits    WebSocket close code
    └── CommandError           a client message that is no command      the protocol's error reply

Errors of lower libraries (redis, requests) are translated where they enter
(``raise BackendUnavailable(...) from exc`` in `gusher.broker`), so the rest
of the code speaks only this vocabulary. `gusher.app` maps an error to an
HTTP response with `http_status` and `payload()`; the connection
(`gusher.edge.connection`) maps a `ProtocolError` to a Close frame with its
`close_code`, and a session sends a `CommandError`'s `reply`.
"""

from __future__ import annotations


class GusherError(Exception):
    """Base of every error gusher raises on purpose."""

    http_status = 500

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def payload(self) -> dict[str, str]:
        """The JSON body sent to an HTTP client (`{"error": reason}`)."""
        return {"error": self.reason}


class ConfigError(GusherError):
    """A setting is missing or malformed."""


class RequestError(GusherError):
    """The caller sent a request we must refuse."""

    http_status = 400


class InvalidName(RequestError):
    """An app key, channel or event name breaks the naming rules."""


class UnknownApp(RequestError):
    """The app key has no `url` field in Redis."""


class PayloadTooLarge(RequestError):
    """A body or parameter exceeds its configured bound."""

    http_status = 413


class RequestTimeout(RequestError):
    """A request's body did not arrive within its deadline."""

    http_status = 408


class AuthError(GusherError):
    """A WebSocket client or an API caller could not prove who it is."""

    http_status = 401


class TokenError(AuthError):
    """A client's JWT has a bad signature, algorithm or claims, or has expired."""


class SignatureError(AuthError):
    """An API request to a secured app (or an admin endpoint) is not properly signed."""


class Forbidden(GusherError):
    """The caller is known but may not do this (a WebSocket origin the app does not list)."""

    http_status = 403


class OverQuota(GusherError):
    """The app holds its `max_connections` across the cluster (Pusher's close code 4004)."""

    http_status = 429


class WebhookError(AuthError):
    """The app's webhook timed out, failed, or answered something unusable."""


class HandshakeError(GusherError):
    """The request is not a WebSocket upgrade we can accept."""

    http_status = 400

    def __init__(self, reason: str, http_status: int = 400) -> None:
        super().__init__(reason)
        self.http_status = http_status


class BackendUnavailable(GusherError):
    """Redis cannot be reached; the request may succeed later."""

    http_status = 503


class ProtocolError(GusherError):
    """A client broke the WebSocket protocol or one of our limits.

    Attributes:
        close_code: the RFC 6455 close code sent in the Close frame.
    """

    def __init__(self, close_code: int, reason: str) -> None:
        super().__init__(reason)
        self.close_code = close_code


class CommandError(GusherError):
    """A client message that gets an error reply instead of being carried out.

    Attributes:
        reply: what to send back, in the client's protocol.
    """

    def __init__(self, reason: str, reply: bytes) -> None:
        super().__init__(reason)
        self.reply = reply

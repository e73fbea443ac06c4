"""Ask an app's webhook who a connecting client is and what it may hear.

The slave POSTs `auth=<token>` (form-encoded; ext: plus `app_key` and
`remote_addr`, signed with the app's secret when it has one) to the app's
webhook URL; the webhook answers `{"user_id": "...", "channels": ["a", "b"]}`. The call is
bounded in time (a gevent.Timeout over the whole exchange, since requests'
timeout is per socket operation), in body size, and in how many run at once per
worker, so that a slow or hostile webhook can delay only its own clients.
"""

from __future__ import annotations

import sys
import urllib.parse
from dataclasses import dataclass, field

import gevent
import gevent.lock
import orjson
import requests
from requests.adapters import HTTPAdapter

from gusher import __version__
from gusher.errors import AuthError, WebhookError
from gusher.keys import MAX_NAME_LENGTH
from gusher.patterns import USER_ID, ChannelRules
from gusher.signing import SIGNATURE_HEADER, sign

MAX_ALLOWED_CHANNELS = 10000
_USER_AGENT = f"gusher/{__version__}"  # so a backend's logs tell webhook calls apart


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client is and which channels it may subscribe to.

    `channels` is the list as given (exact names, `*` globs, `{user_id}`
    placeholders); `rules` is it compiled once, for every subscribe to use.
    """

    user_id: str
    channels: tuple[str, ...]
    rules: ChannelRules = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        channels, rules = _allowance(self.channels, self.user_id)
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "rules", rules)


_ALLOWANCES_KEPT = 1024
# Longer lists are compiled per identity and never kept: the memo must not
# hold on to megabytes of channel names after their connections are gone.
_SHARED_LIST_MAX = 64
_allowances: dict[tuple[tuple[str, ...], str], tuple[tuple[str, ...], ChannelRules]] = {}


def _allowance(channels: tuple[str, ...], user_id: str) -> tuple[tuple[str, ...], ChannelRules]:
    """`channels` and their compiled rules, shared by every identity allowed the same.

    A webhook usually answers many users with one list (the app's channels,
    with `{user_id}` where they differ), so the tuple and its rules (~160
    bytes per connection, issue 4) are kept once per distinct list, and
    compiled once. A list with the placeholder compiles differently per
    user, so its user is part of the key. The memo keeps the newest
    `_ALLOWANCES_KEPT` lists of at most `_SHARED_LIST_MAX` names; identities
    hold their own references.
    """
    if len(channels) > _SHARED_LIST_MAX:
        return channels, ChannelRules(channels, user_id)
    key = (channels, user_id if any(USER_ID in c for c in channels) else "")
    shared = _allowances.get(key)
    if shared is None:
        shared = (channels, ChannelRules(channels, user_id))
        if len(_allowances) >= _ALLOWANCES_KEPT:
            del _allowances[next(iter(_allowances))]  # the oldest
        _allowances[key] = shared
    return shared


def identity_from(answer: object, source: str, error: type[AuthError]) -> Identity:
    """Validate `{"user_id", "channels": [str, ...]}` from a webhook or a JWT — pure.

    Args:
        answer: the decoded JSON answer or claims.
        source: how reasons name it ("webhook answer", "token").
        error: the error class to raise.
    """
    if not isinstance(answer, dict):
        raise error(f"{source} is not a JSON object")
    channels = answer.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise error(f"{source} has no 'channels' list of strings")
    usable = [c for c in channels if c and len(c) <= MAX_NAME_LENGTH]
    if not usable:
        raise error(f"{source} allowed no channels")
    if len(usable) > MAX_ALLOWED_CHANNELS:
        raise error(f"{source} allowed more than {MAX_ALLOWED_CHANNELS} channels")
    user_id = answer.get("user_id", "")
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise error(f"{source}'s 'user_id' is not a string")
    # In order, once each; interned, so connections allowed the same channels
    # (every user of an app, often) share the names instead of a copy each.
    return Identity(str(user_id), tuple(dict.fromkeys(map(sys.intern, usable))))


def parse_webhook_answer(body: bytes) -> Identity:
    """Validate the webhook's JSON answer — pure.

    Raises:
        WebhookError: the body is not `{"user_id", "channels": [str, ...]}` or
            the channel list is empty.
    """
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WebhookError("webhook answer is not JSON") from None
    return identity_from(answer, "webhook answer", WebhookError)


def webhook_request(auth: str, app_key: str, remote: str, secret: str) -> tuple[bytes, dict[str, str]]:
    """The form body and headers of a webhook call — pure.

    The seed sends only `auth`; `app_key` and `remote_addr` are added so one
    backend can serve several apps and log who connects. With a `secret`, the
    body is signed (`X-Gusher-Signature`), so the backend can tell that gusher
    is calling and not someone replaying tokens against it.
    """
    fields = {"auth": auth}
    if app_key:
        fields["app_key"] = app_key
    if remote:
        fields["remote_addr"] = remote
    body = urllib.parse.urlencode(fields).encode("ascii")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": _USER_AGENT}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return body, headers


class Authenticator:
    """Calls webhooks for one worker, with bounded time, size and concurrency."""

    def __init__(self, timeout: float, max_body: int, concurrency: int) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._slots = gevent.lock.BoundedSemaphore(concurrency)
        # Keep as many connections to a webhook as calls may run at once:
        # requests' default pool keeps 10 per host and closes the rest after
        # each call, so a reconnect storm opened a new TCP connection (and left
        # a TIME_WAIT socket) for most handshakes.
        #
        # Calls go to the transport adapter directly, not through a Session:
        # a Session's cookie jar would carry a cookie the webhook set while
        # answering one user into the calls made for every other user, and
        # merging its settings, searching the environment for proxies and
        # .netrc, and running its hooks cost ~20% of a connect's CPU.
        self._adapter = HTTPAdapter(pool_connections=16, pool_maxsize=concurrency)

    def authenticate(
        self, url: str, auth: str, app_key: str = "", remote: str = "", secret: str = ""
    ) -> Identity:
        """Ask the webhook at `url` about `auth` (see `webhook_request` for the rest).

        Raises:
            WebhookError: timeout, connection failure, non-2xx status, a body
                over `max_body`, or an unusable answer.
        """
        body, headers = webhook_request(auth, app_key, remote, secret)
        try:
            expired = WebhookError(f"webhook timed out after {self.timeout:g} s")
            timeout = gevent.Timeout(self.timeout, expired)
            with timeout, self._slots:
                answer = self._post(url, body, headers)
        except requests.RequestException as exc:
            raise WebhookError(f"webhook unreachable: {exc.__class__.__name__}") from exc
        return parse_webhook_answer(answer)

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bytes:
        request = requests.Request("POST", url, data=body, headers=headers).prepare()
        with self._adapter.send(request, stream=True, timeout=self.timeout) as response:
            if not 200 <= response.status_code < 300:
                raise WebhookError(f"webhook answered HTTP {response.status_code}")
            body = response.raw.read(self.max_body + 1, decode_content=True)
            if len(body) > self.max_body:
                raise WebhookError(f"webhook answer is over {self.max_body} bytes")
            return body

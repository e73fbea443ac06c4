"""Ask an app's webhook who a connecting client is and what it may hear.

The slave POSTs `auth=<token>` (form-encoded; ext: plus `app_key` and
`remote_addr`, signed with the app's secret when it has one) to the app's
webhook URL; the webhook answers `{"user_id": "...", "channels": ["a", "b"]}`. The call is
bounded in time (a gevent.Timeout over the whole exchange, since urllib3's
timeout is per socket operation), in body size, and in how many run at once per
worker, so that a slow or hostile webhook can delay only its own clients.

It goes through urllib3's connection pools directly (issue 16): the connect
path spent 31 % of its time in the webhook call, most of it in requests'
request preparation and response wrapping, which a form POST with a bounded
read needs none of.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.lock
import urllib3
from urllib3.connectionpool import HTTPConnectionPool, connection_from_url

from gusher import __version__
from gusher.core import exactjson
from gusher.core.identity import Identity, identity_from
from gusher.core.metrics import Metrics
from gusher.core.signing import SIGNATURE_HEADER, sign
from gusher.errors import WebhookError

_USER_AGENT = f"gusher/{__version__}"  # so a backend's logs tell webhook calls apart
_MAX_ORIGINS = 16  # webhook hosts with a pool of kept connections, per worker
_MAX_TARGETS = 256  # webhook URLs whose pool and path are remembered


def parse_webhook_answer(body: bytes) -> Identity:
    """Validate the webhook's JSON answer — pure.

    Raises:
        WebhookError: the body is not `{"user_id", "channels": [str, ...]}` or
            the channel list is empty.
    """
    try:
        answer = exactjson.loads(body)
    except exactjson.JSONDecodeError:
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
    """Calls webhooks for one worker, with bounded time, size and concurrency.

    At most `concurrency` calls run at once in the worker, and at most
    `per_app` of them for one app: an app whose webhook hangs fills its own
    share and waits there, so the other apps' calls still find free slots
    (one shared bound let a few hundred handshakes to one hanging webhook
    delay every other app's clients by seconds, issue 17).
    """

    def __init__(
        self,
        timeout: float,
        max_body: int,
        concurrency: int,
        per_app: int | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.timeout = timeout
        self.metrics = metrics or Metrics()
        self.max_body = max_body
        self.per_app = max(1, min(concurrency, per_app if per_app is not None else concurrency))
        self._slots = gevent.lock.BoundedSemaphore(concurrency)
        # app key → [its semaphore, calls using it]; an app's entry lives while it has calls.
        self._app_slots: dict[str, list] = {}
        # Keep as many connections to a webhook as calls may run at once:
        # requests' default pool keeps 10 per host and closes the rest after
        # each call, so a reconnect storm opened a new TCP connection (and left
        # a TIME_WAIT socket) for most handshakes.
        #
        # Calls go to urllib3's pools, not through a requests Session: a
        # Session's cookie jar would carry a cookie the webhook set while
        # answering one user into the calls made for every other user, and
        # merging its settings, searching the environment for proxies and
        # .netrc, and running its hooks cost ~20% of a connect's CPU. No
        # redirects and no retries: a webhook answers where it is asked.
        #
        # One pool per webhook origin, found by the URL itself: urllib3's
        # PoolManager parses the URL, normalises a pool key and takes a lock
        # on every call, ~4 % of a webhook connect's CPU (py-spy, issue 16)
        # for an answer that never changes.
        self._pool_options: dict[str, Any] = {
            "maxsize": concurrency,
            "retries": False,
            "timeout": urllib3.Timeout(total=timeout),
        }
        self._targets: dict[str, tuple[HTTPConnectionPool, str]] = {}  # url → its pool, its path
        self._pools: dict[tuple[str | None, str, int | None], HTTPConnectionPool] = {}  # by origin

    def authenticate(
        self, url: str, auth: str, app_key: str = "", remote: str = "", secret: str = ""
    ) -> Identity:
        """Ask the webhook at `url` about `auth` (see `webhook_request` for the rest).

        Raises:
            WebhookError: timeout, connection failure, non-2xx status, a body
                over `max_body`, or an unusable answer.
        """
        body, headers = webhook_request(auth, app_key, remote, secret)
        started = time.monotonic()
        try:
            expired = WebhookError(f"webhook timed out after {self.timeout:g} s")
            timeout = gevent.Timeout(self.timeout, expired)
            with timeout, self._app_share(app_key), self._slots:
                answer = self._post(url, body, headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WebhookError(f"webhook unreachable: {exc.__class__.__name__}") from exc
        finally:
            self.metrics.observe("webhook_seconds", time.monotonic() - started)
        return parse_webhook_answer(answer)

    @contextmanager
    def _app_share(self, app_key: str) -> Iterator[None]:
        """One of the `per_app` slots of `app_key` (taken before a slot of the worker's)."""
        entry = self._app_slots.get(app_key)
        if entry is None:
            entry = self._app_slots[app_key] = [gevent.lock.BoundedSemaphore(self.per_app), 0]
        entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self._app_slots[app_key]

    def _target(self, url: str) -> tuple[HTTPConnectionPool, str]:
        """The pool of `url`'s origin and the path to ask it for (both kept, a few apps' worth)."""
        target = self._targets.get(url)
        if target is not None:
            return target
        if not url.lower().startswith(("http://", "https://")):
            raise WebhookError("webhook url must be http:// or https://")
        try:
            parsed = urllib3.util.parse_url(url)
        except urllib3.exceptions.LocationParseError:
            raise WebhookError("webhook url cannot be parsed") from None
        if not parsed.host:
            raise WebhookError("webhook url has no host")
        origin = (parsed.scheme, parsed.host, parsed.port)  # the scheme is http(s), checked above
        pool = self._pools.get(origin)
        if pool is None:
            if len(self._pools) >= _MAX_ORIGINS:  # the oldest goes, as PoolManager's 16 did
                self._pools.pop(next(iter(self._pools))).close()
                self._targets.clear()  # some named the pool that went
            pool = self._pools[origin] = connection_from_url(url, **self._pool_options)
        if len(self._targets) >= _MAX_TARGETS:
            self._targets.clear()
        target = self._targets[url] = (pool, parsed.request_uri)
        return target

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> bytes:
        pool, path = self._target(url)
        response = pool.urlopen(
            "POST",
            path,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
        )
        reusable = False
        try:
            if not 200 <= response.status < 300:
                raise WebhookError(f"webhook answered HTTP {response.status}")
            answer = response.read(self.max_body + 1, decode_content=True)
            if len(answer) > self.max_body:
                raise WebhookError(f"webhook answer is over {self.max_body} bytes")
            reusable = True
            return answer
        finally:
            # Only a connection whose answer was read whole goes back to the pool: one with an
            # unread body (an error status, an answer over the bound) would hand its rest to
            # the next call.
            if not reusable:
                response.close()
            response.release_conn()

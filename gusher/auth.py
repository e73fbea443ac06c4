"""Ask an app's webhook who a connecting client is and what it may hear.

The slave POSTs `auth=<token>` (form-encoded) to the app's webhook URL; the
webhook answers `{"user_id": "...", "channels": ["a", "b"]}`. The call is
bounded in time (a gevent.Timeout over the whole exchange, since requests'
timeout is per socket operation), in body size, and in how many run at once per
worker, so that a slow or hostile webhook can delay only its own clients.
"""

from __future__ import annotations

from dataclasses import dataclass

import gevent
import gevent.lock
import orjson
import requests

from gusher.errors import WebhookError
from gusher.keys import MAX_NAME_LENGTH

MAX_ALLOWED_CHANNELS = 10000


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client is and which channels it may subscribe to."""

    user_id: str
    channels: frozenset[str]


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
    if not isinstance(answer, dict):
        raise WebhookError("webhook answer is not a JSON object")
    channels = answer.get("channels")
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise WebhookError("webhook answer has no 'channels' list of strings")
    usable = [c for c in channels if c and len(c) <= MAX_NAME_LENGTH]
    if not usable:
        raise WebhookError("webhook allowed no channels")
    if len(usable) > MAX_ALLOWED_CHANNELS:
        raise WebhookError(f"webhook allowed more than {MAX_ALLOWED_CHANNELS} channels")
    user_id = answer.get("user_id", "")
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)):
        raise WebhookError("webhook answer's 'user_id' is not a string")
    return Identity(str(user_id), frozenset(usable))


class Authenticator:
    """Calls webhooks for one worker, with bounded time, size and concurrency."""

    def __init__(self, timeout: float, max_body: int, concurrency: int) -> None:
        self.timeout = timeout
        self.max_body = max_body
        self._slots = gevent.lock.BoundedSemaphore(concurrency)
        self._session = requests.Session()

    def authenticate(self, url: str, auth: str) -> Identity:
        """Ask the webhook at `url` about `auth`.

        Raises:
            WebhookError: timeout, connection failure, non-2xx status, a body
                over `max_body`, or an unusable answer.
        """
        try:
            with gevent.Timeout(self.timeout, WebhookError(f"webhook timed out after {self.timeout:g} s")):
                with self._slots:
                    body = self._post(url, auth)
        except requests.RequestException as exc:
            raise WebhookError(f"webhook unreachable: {exc.__class__.__name__}") from exc
        return parse_webhook_answer(body)

    def _post(self, url: str, auth: str) -> bytes:
        with self._session.post(
            url, data={"auth": auth}, timeout=self.timeout, stream=True, allow_redirects=False
        ) as response:
            if not 200 <= response.status_code < 300:
                raise WebhookError(f"webhook answered HTTP {response.status_code}")
            body = response.raw.read(self.max_body + 1, decode_content=True)
            if len(body) > self.max_body:
                raise WebhookError(f"webhook answer is over {self.max_body} bytes")
            return body

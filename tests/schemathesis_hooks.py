"""schemathesis hooks (tests/test_schemathesis.py): Pusher HTTP API requests are signed as its SDKs sign them.

Without a signature every Pusher operation would be a 401 and the fuzzing
would never reach the bodies and names behind it. The signature is added to
the request as prepared, so it covers exactly what is sent: the decoded path,
the generated query (each name once) and the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
import urllib.parse

import requests
import schemathesis


class PusherSignature(requests.auth.AuthBase):
    """`auth_key`, `auth_timestamp`, `auth_version`, `body_md5` and `auth_signature` in the query."""

    def __init__(self, key: str, secret: str) -> None:
        self.key = key
        self.secret = secret

    def __call__(self, prepared: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urllib.parse.urlsplit(prepared.url or "")
        params = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        params.update(auth_key=self.key, auth_timestamp=str(int(time.time())), auth_version="1.0")
        if body:
            params["body_md5"] = hashlib.md5(body).hexdigest()
        pairs = "&".join(f"{k.lower()}={v}" for k, v in sorted(params.items()) if k != "auth_signature")
        text = "\n".join([prepared.method or "", urllib.parse.unquote(parts.path), pairs])
        params["auth_signature"] = hmac.new(self.secret.encode(), text.encode(), hashlib.sha256).hexdigest()
        prepared.url = urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(params)))
        return prepared


if os.environ.get("GUSHER_ST_PUSHER_KEY"):
    signer = PusherSignature(os.environ["GUSHER_ST_PUSHER_KEY"], os.environ["GUSHER_ST_PUSHER_SECRET"])
    schemathesis.auth.set_from_requests(signer).apply_to(tag="pusher")

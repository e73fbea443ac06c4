"""The Pusher HTTP API's pure part (gusher/core/pusher_api.py): signatures as the SDKs make them, bodies."""

from __future__ import annotations

import json
import time

import pusher
import pytest

from gusher.core.pusher_api import parse_trigger, string_to_sign, verify_request
from gusher.errors import PayloadTooLarge, SignatureError
from gusher.keys import pubsub_channel, user_channel

# --- the pure part: signatures and bodies ----------------------------------------------------


def test_the_string_to_sign_is_pusher_s() -> None:
    """METHOD, the decoded path and the sorted pairs but auth_signature, keys lower-cased, unescaped."""
    params = {"auth_key": "k", "Info": "user_count,subscription_count", "auth_signature": "x", "a": "b c"}
    assert string_to_sign("get", "/apps/1/channels", params) == (
        "GET\n/apps/1/channels\na=b c&auth_key=k&info=user_count,subscription_count"
    )


def test_a_request_the_python_sdk_signs_is_verified() -> None:
    """pusher-http-python's own Request (body_md5 even on GET) passes; one changed byte does not."""
    client = pusher.Pusher(app_id="1", key="key", secret="secret")._pusher_client
    for request in (
        pusher.http.Request(client, "GET", "/apps/1/channels", {"info": "subscription_count"}),
        pusher.http.Request(client, "POST", "/apps/1/events", {"name": "e", "channels": ["c"], "data": "d"}),
    ):
        params = dict(request.query_params)
        verify_request("secret", request.method, request.path, params, request.body, time.time())
        with pytest.raises(SignatureError, match="auth_signature"):
            verify_request("secret", request.method, request.path + "x", params, request.body, time.time())
        with pytest.raises(SignatureError, match="auth_timestamp"):
            verify_request("secret", request.method, request.path, params, request.body, time.time() + 601)


def test_data_is_bounded_in_utf_8_bytes() -> None:
    """`data` over the bound (counted in UTF-8 bytes, not characters) is a 413; the body is checked first."""
    body = json.dumps({"name": "e", "channel": "c", "data": "é" * 6}).encode()
    assert len(parse_trigger("app", body, 100, 12)[0].routed[1].data) == 6
    with pytest.raises(PayloadTooLarge):
        parse_trigger("app", body, 100, 11)


def test_a_user_channel_travels_on_the_user_s_key_and_keeps_its_name() -> None:
    """`#server-to-user-{id}` is published on gusher's key of that user, named as Pusher names it."""
    body = json.dumps({"name": "e", "channels": ["#server-to-user-u1", "c"], "data": "d", "socket_id": "1.2"})
    events = parse_trigger("app", body.encode(), 100, 1000)
    assert [(e.routed[0], e.routed[1].channel, e.routed[1].exclude) for e in events] == [
        (user_channel("app", "u1"), "#server-to-user-u1", "1.2"),
        (pubsub_channel("app", "c"), "c", "1.2"),
    ]

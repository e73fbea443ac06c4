"""App records parsed from their Redis hash (pure)."""

from __future__ import annotations

from gusher import security
from gusher.apps import parse_app
from gusher.config import Settings


def test_secrets_are_decoded_losslessly() -> None:
    """Two binary secrets differing only in invalid UTF-8 bytes stay different (no U+FFFD collapse)."""
    a = parse_app("a", {b"url": b"http://x", b"secret": b"\xff\xfe\xfd\xfc", b"jwt_key": b"\x80\x81"})
    b = parse_app("b", {b"url": b"http://x", b"secret": b"\xfc\xfd\xfe\xff"})
    assert a.secret != b.secret
    assert a.secret.encode("utf-8", "surrogateescape") == b"\xff\xfe\xfd\xfc"
    assert a.jwt_key.encode("utf-8", "surrogateescape") == b"\x80\x81"


def test_a_blank_secret_field_fails_closed() -> None:
    """`HSET app secret ""` (an unset variable) secures the app rather than silently leaving it open."""
    app = parse_app("a", {b"url": b"http://x", b"secret": b"  "})
    assert app.is_secured and app.secret == ""
    assert not parse_app("open", {b"url": b"http://x"}).is_secured


def test_start_up_log_names_open_and_blank_secret_apps() -> None:
    """The start-up lines name the open apps and, separately, the apps locked by an empty secret."""
    apps = [
        parse_app("open", {b"url": b"u"}),
        parse_app("blank", {b"url": b"u", b"secret": b""}),
        parse_app("shut", {b"url": b"u", b"secret": b"s3cret"}),
    ]
    lines = security.describe_open_apps(apps, Settings(admin_token="t"))
    assert any("no secret" in line and "open" in line and "blank" not in line for line in lines)
    assert any("empty secret" in line and "blank" in line for line in lines)
    assert not any("s3cret" in line or "shut" in line for line in lines)

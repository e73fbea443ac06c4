"""The master's request path in `gusher.app`, in process: the UTF-8 check of URLs and no sessions."""

from __future__ import annotations

from collections.abc import Iterator

import flask
import pytest

from gusher.app import create_master_app
from gusher.config import load_settings
from gusher.embedded import EmbeddedRedis


@pytest.fixture(scope="module")
def master_app() -> Iterator[flask.Flask]:
    with EmbeddedRedis() as server:
        app = create_master_app(load_settings("/nonexistent", {"REDIS_ADDR": server.addr}))
        app.extensions["gusher.broker"].apps.save("raw-app", {"url": "http://127.0.0.1:9/auth"})
        yield app


@pytest.mark.parametrize(
    "path, query, reason",
    [
        # WSGI hands both over as latin-1: these are the raw bytes \xff and \xe9, never %-escaped.
        ("/api/push/raw-app/\xff/e", "data=x", "path is not valid UTF-8"),
        ("/api/push/raw-app/c\xe9/e", "data=x", "path is not valid UTF-8"),
        ("/api/push/raw-app/c/e", "data=\xff", "parameters are not valid UTF-8"),
        ("/api/push/raw-app/c/e", "data=x&y=\xe9", "parameters are not valid UTF-8"),
        ("/api/push/raw-app/c/e", "data=%ff", "parameters are not valid UTF-8"),
    ],
)
def test_unescaped_non_utf8_bytes_are_refused(
    master_app: flask.Flask, path: str, query: str, reason: str
) -> None:
    """Raw non-UTF-8 bytes in the path or query are a 400, as their %-escapes are (ASCII skips the check)."""
    response = master_app.test_client().post(
        "/", environ_overrides={"PATH_INFO": path, "QUERY_STRING": query}
    )
    assert response.status_code == 400, response.get_data()
    assert response.get_json() == {"error": reason}


def test_unescaped_utf8_bytes_are_accepted(master_app: flask.Flask) -> None:
    """Raw UTF-8 (`é` as the bytes \\xc3\\xa9) in the channel and the data passes the check and is pushed."""
    response = master_app.test_client().post(
        "/",
        environ_overrides={"PATH_INFO": "/api/push/raw-app/c\xc3\xa9/e", "QUERY_STRING": "data=\xc3\xa9"},
    )
    assert response.status_code == 200, response.get_data()
    assert response.get_json() == {"channel": "cé", "event": "e", "data": "é"}


def test_master_keeps_no_session(master_app: flask.Flask) -> None:
    """The master's session is Flask's read-only null session, and no answer sets a cookie."""
    with master_app.test_request_context("/api/push/raw-app/c/e?data=x", method="POST"):
        assert isinstance(flask.session, flask.sessions.NullSession)
        with pytest.raises(RuntimeError):
            flask.session["user"] = "x"
    response = master_app.test_client().post("/api/push/raw-app/c/e?data=x")
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers

"""Who may use the admin console, and which state changes are its own — pure (gusher.core.console_access)."""

from __future__ import annotations

import pytest

from gusher.core import console_access as access
from gusher.core.console_access import Visit
from gusher.ops import cluster

TOKEN = "admin-token-for-tests"
NOW = 1_800_000_000.0


def test_a_session_cookie_holds_for_its_lifetime_and_only_with_its_token() -> None:
    cookie = access.new_session(TOKEN, NOW, lifetime=60)
    assert access.session_is_valid(TOKEN, cookie, NOW + 59)
    assert not access.session_is_valid(TOKEN, cookie, NOW + 61), "expired"
    assert not access.session_is_valid("another-token", cookie, NOW), "the token changed: sessions end"
    assert not access.session_is_valid("", cookie, NOW)
    assert access.new_session(TOKEN, NOW) != access.new_session(TOKEN, NOW), "a nonce each"


@pytest.mark.parametrize(
    "forge",
    [
        lambda c: c.replace(c.split(".")[0], str(int(c.split(".")[0]) + 3600), 1),  # a later expiry
        lambda c: c[:-1] + ("0" if c[-1] != "0" else "1"),  # another MAC
        lambda c: c + ".x",
        lambda c: "",
        lambda c: "9" * 40 + ".n.m",
    ],
)
def test_a_forged_session_cookie_is_refused(forge) -> None:
    assert not access.session_is_valid(TOKEN, forge(access.new_session(TOKEN, NOW)), NOW)


@pytest.mark.parametrize(
    "address, loopback",
    [
        ("127.0.0.1", True),
        ("127.9.8.7", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("192.0.2.2", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("", False),
        ("localhost", False),  # a peer address is never a name
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert access.is_loopback(address) is loopback


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1:7999", True),
        ("localhost:7999", True),
        ("localhost", True),
        ("[::1]:7999", True),
        ("console.localhost", True),  # RFC 6761: browsers resolve *.localhost to loopback themselves
        ("evil.example:7999", False),  # DNS rebinding: an attacker's name pointed at 127.0.0.1
        ("127.0.0.1.evil.example", False),
        ("", False),
    ],
)
def test_loopback_host_names(host: str, loopback: bool) -> None:
    assert access.is_loopback_host(host) is loopback


def test_with_a_token_only_a_valid_session_gets_in_from_anywhere() -> None:
    cookie = access.new_session(TOKEN, NOW)
    assert access.refusal(TOKEN, Visit("203.0.113.9", "push.example.com", True, cookie), NOW) is None
    refused = access.refusal(TOKEN, Visit("127.0.0.1", "localhost", False, ""), NOW)
    assert refused is not None and refused[0] == 401 and "sign in" in refused[1]


@pytest.mark.parametrize(
    "visit",
    [
        Visit("192.0.2.2", "192.0.2.2:7999", False, ""),  # another machine
        Visit("127.0.0.1", "push.example.com", True, ""),  # through a proxy on this host
        Visit("127.0.0.1", "evil.example:7999", False, ""),  # DNS rebinding
    ],
)
def test_without_a_token_only_a_direct_loopback_visit_gets_in(visit: Visit) -> None:
    refused = access.refusal("", visit, NOW)
    assert refused is not None and refused[0] == 403 and "loopback only" in refused[1]
    assert access.refusal("", Visit("127.0.0.1", "127.0.0.1:7999", False, ""), NOW) is None


def test_a_state_change_must_carry_the_sessions_csrf_token_from_the_same_origin() -> None:
    cookie = access.new_session(TOKEN, NOW)
    csrf = access.csrf_token(TOKEN, cookie)
    hosts = ("127.0.0.1:7999", "")
    assert access.cross_site_reason(TOKEN, cookie, csrf, "same-origin", "http://127.0.0.1:7999", hosts) == ""
    assert access.cross_site_reason(TOKEN, cookie, csrf, "", "", hosts) == "", (
        "an older browser sends neither"
    )
    assert "missing" in access.cross_site_reason(TOKEN, cookie, "", "same-origin", "", hosts)
    assert "does not match" in access.cross_site_reason(TOKEN, cookie, "0" * 64, "", "", hosts)
    other = access.csrf_token(TOKEN, access.new_session(TOKEN, NOW))
    assert "does not match" in access.cross_site_reason(TOKEN, cookie, other, "", "", hosts)
    assert "Sec-Fetch-Site: cross-site" in access.cross_site_reason(
        TOKEN, cookie, csrf, "cross-site", "", hosts
    )
    assert "Sec-Fetch-Site: same-site" in access.cross_site_reason(
        TOKEN, cookie, csrf, "same-site", "", hosts
    )
    assert "cross-origin" in access.cross_site_reason(TOKEN, cookie, csrf, "", "http://evil.example", hosts)
    behind_tls_proxy = ("internal:7999", "push.example.com")
    assert (
        access.cross_site_reason(TOKEN, cookie, csrf, "", "https://push.example.com", behind_tls_proxy) == ""
    )


def test_the_cluster_view_lists_live_workers_and_sums_both_roles() -> None:
    import orjson

    def report(pid: int, age: float, **counts: int) -> bytes:
        return orjson.dumps(
            {"pid": pid, "update_time": NOW - age, "version": "v", "local_listen": ":1", **counts}
        )

    slaves = {
        "10.0.0.1@8000": {
            b"h:1": report(1, 0, connections=3, subscriptions=5, deliveries=100),
            b"h:2": report(2, 1, connections=2, subscriptions=1, deliveries=50),
            b"h:3": report(3, 10, connections=99),  # dead: older than three intervals
        },
        "10.0.0.2@8000": {b"h:9": report(9, 10)},  # no live worker: not listed
    }
    masters = {"10.0.0.1@7999": {b"h:4": report(4, 0, pushes=7, publications=9)}}
    view = cluster.view(slaves, masters, NOW, interval=1.0)
    assert [s["id"] for s in view["slaves"]] == ["10.0.0.1@8000"]
    assert [w["pid"] for w in view["slaves"][0]["workers"]] == [1, 2]
    assert view["workers"] == 3
    assert view["totals"] == {
        "connections": 5,
        "subscriptions": 6,
        "deliveries": 150,
        "messages_in": 0,
        "pushes": 7,
        "publications": 9,
    }

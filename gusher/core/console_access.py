"""Who may use the admin console, and whether a state change really comes from it — pure.

Two modes, chosen by whether `GUSHER_ADMIN_TOKEN` is set:

- **signed in**: the admin token, typed once into the console, buys a session
  cookie `{expires}.{nonce}.{mac}` (HMAC-SHA256 keyed by the token). Every
  master worker checks it without shared state, and changing the token ends
  every session. The cookie is HttpOnly and SameSite=Strict (set by
  `gusher.api.console`); each state change must also carry the session's CSRF
  token, derived from the cookie, which only a page of the console can read.
- **loopback only** (no token): a request is let in only when it came from a
  loopback address, straight (no proxy header: nginx on the same host would
  make every visitor look local) and for a loopback host name (a DNS
  rebinding page cannot pass as the console).

In both modes a state change must be same-origin by the browser's own word
(`Sec-Fetch-Site`, `Origin` when sent) and send the `X-Gusher-CSRF` header,
which no cross-site form can and no cross-site script may without a CORS
preflight the master never grants.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from gusher.core.signing import same

SESSION_SECONDS = 12 * 3600
COOKIE_NAME = "gusher_console"
CSRF_HEADER = "X-Gusher-CSRF"

# Headers a reverse proxy adds: with any of them, the loopback peer is the proxy, not the visitor.
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP", "X-Forwarded-Host")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _mac(token: str, message: str) -> str:
    return hmac.new(token.encode("utf-8", "surrogateescape"), message.encode(), hashlib.sha256).hexdigest()


def new_session(token: str, now: float, lifetime: int = SESSION_SECONDS) -> str:
    """A session cookie value valid for `lifetime` seconds."""
    expires, nonce = int(now) + lifetime, secrets.token_hex(16)
    return f"{expires}.{nonce}.{_mac(token, f'session|{expires}|{nonce}')}"


def session_is_valid(token: str, cookie: str, now: float) -> bool:
    """Whether `cookie` was issued with `token` and has not expired (constant-time MAC check)."""
    parts = cookie.split(".")
    if not token or len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) > 12:
        return False
    expires, nonce, mac = parts
    return int(expires) > now and same(mac, _mac(token, f"session|{expires}|{nonce}"))


def csrf_token(token: str, cookie: str) -> str:
    """The CSRF token of a session: the console reads it from a same-origin JSON answer."""
    return _mac(token, f"csrf|{cookie}") if token else "loopback"


def is_loopback(address: str) -> bool:
    """Whether `address` (an IP, maybe IPv4-mapped IPv6) is a loopback address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def is_loopback_host(host: str) -> bool:
    """Whether a `Host` header (name or address, maybe with a port) names this machine's loopback."""
    name = urlsplit(f"//{host}").hostname or ""
    return name in _LOOPBACK_NAMES or name.endswith(".localhost") or is_loopback(name)


@dataclass(frozen=True)
class Visit:
    """What of a request decides console access."""

    remote_addr: str
    host: str
    proxied: bool
    cookie: str


def refusal(token: str, visit: Visit, now: float) -> tuple[int, str] | None:
    """Why `visit` may not see the console: (401 | 403, reason), or None when it may."""
    if token:
        if session_is_valid(token, visit.cookie, now):
            return None
        return 401, "sign in with the admin token"
    if visit.proxied or not is_loopback(visit.remote_addr) or not is_loopback_host(visit.host):
        return (
            403,
            "without GUSHER_ADMIN_TOKEN the console answers loopback only (set a token to use it remotely)",
        )
    return None


def cross_site_reason(
    token: str, cookie: str, csrf: str, fetch_site: str, origin: str, hosts: tuple[str, ...]
) -> str:
    """Why a state-changing request is not the console's own, or "" when it is.

    Args:
        token: the admin token ("" in loopback mode).
        cookie: the session cookie sent ("" for a sign-in).
        csrf: the `X-Gusher-CSRF` header sent; a sign-in needs it present only.
        fetch_site: the `Sec-Fetch-Site` header ("" when the browser sent none).
        origin: the `Origin` header ("" when none).
        hosts: the names this request was sent to (`Host`, and `X-Forwarded-Host`
            behind a proxy): the Origin's host must be one of them; the
            scheme may differ behind a TLS-terminating proxy.
    """
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return f"cross-site request refused (Sec-Fetch-Site: {fetch_site})"
    if origin and urlsplit(origin).netloc.lower() not in {h.lower() for h in hosts if h}:
        return "cross-origin request refused"
    if not csrf:
        return f"the {CSRF_HEADER} header is missing"
    if cookie and not same(csrf, csrf_token(token, cookie)):
        return f"the {CSRF_HEADER} header does not match the session"
    return ""

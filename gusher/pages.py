"""What both roles serve as files: the demo page and the JavaScript client (`gusher/static/`).

`gusher/static/gusher.js` is a link to `clients/js/gusher.js`, the client's one
source, so a wheel, a Docker image and a checkout all serve the published file.
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"

# A public file that pages of any origin import as an ES module (which needs CORS).
CLIENT_HEADERS = {
    "Content-Type": "text/javascript; charset=utf-8",
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "public, max-age=300",
    "X-Content-Type-Options": "nosniff",
}


def demo_page() -> bytes:
    """The demo page (`/demo`)."""
    return (STATIC / "demo.html").read_bytes()


def client_module() -> bytes:
    """The JavaScript client (`/gusher.js`)."""
    return (STATIC / "gusher.js").read_bytes()

"""The demo page as users first see it, in headless Chromium: two people on the master's /demo see
each other online, push to each other and see the delivery latency; the slave's /demo still works.

Screenshots go to `test-artifacts/demo/`.
"""

from __future__ import annotations

import requests

from tests.browser import ARTIFACTS, needs_chromium, page_errors
from tests.support import GunicornProcess

SHOTS = ARTIFACTS / "demo"


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors = page_errors(page)
    page.goto(url)
    page.wait_for_selector("#status:has-text('subscribed')", timeout=15000)
    return page, errors


def _demo_url(base: str, app_key: str, name: str, **extra: str) -> str:
    query = {"app": app_key, "name": name, "auth": f"allow:{name}:demo", **extra}
    return f"{base}/demo?" + requests.compat.urlencode(query)


@needs_chromium
def test_two_people_see_each_other_push_and_see_the_latency(
    browser, master: GunicornProcess, slave: GunicornProcess, app_key: str
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    slave_at = f"127.0.0.1:{slave.port}"
    alice, alice_errors = _open(browser, _demo_url(master.url, app_key, "alice", slave=slave_at))
    bob, bob_errors = _open(browser, _demo_url(master.url, app_key, "bob", slave=slave_at))

    # Who is online: both, on every page, from the slaves' presence (one heartbeat interval).
    for page in (alice, bob):
        page.wait_for_selector("#online li:has-text('alice')", timeout=15000)
        page.wait_for_selector("#online li:has-text('bob')", timeout=15000)
    assert alice.inner_text("#online li.me") == "alice"

    alice.fill("#text", "hello from alice")
    alice.click("#push-form button[type=submit]")
    bob.wait_for_selector("#messages li:has-text('alice: hello from alice')")
    alice.wait_for_selector("#messages li:has-text('alice: hello from alice') .latency")
    assert alice.inner_text("#lat-count") == "1" and alice.inner_text("#lat-last").endswith(" ms")
    assert bob.inner_text("#lat-count") == "0", "latency is measured by the page that pushed"

    alice.click("#burst")
    alice.wait_for_selector("#push-result:has-text('Burst of 100: all delivered')", timeout=20000)
    assert alice.inner_text("#lat-count") == "101"
    alice.screenshot(path=str(SHOTS / "1-master-demo.png"), full_page=True)
    bob.screenshot(path=str(SHOTS / "2-second-person.png"), full_page=True)
    assert alice_errors == [] and bob_errors == []
    alice.close()
    bob.close()


@needs_chromium
def test_the_slaves_demo_page_receives_and_pushes_through_the_master(
    browser, master: GunicornProcess, slave: GunicornProcess, app_key: str
) -> None:
    """The seed's /demo on the slave: same page, its WebSocket on its own origin, pushes to ?master=."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    carol, errors = _open(browser, _demo_url(slave.url, app_key, "carol", master=master.url))
    requests.post(f"{master.url}/api/push/{app_key}/demo/hello", data={"data": "hi there"}, timeout=5)
    carol.wait_for_selector("#messages li:has-text('hi there')")
    carol.fill("#text", "from the slave's page")
    carol.click("#push-form button[type=submit]")
    carol.wait_for_selector("#messages li:has-text('carol: from the slave') .latency")
    assert "from the master" in carol.inner_text("#online-note")
    carol.screenshot(path=str(SHOTS / "3-slave-demo.png"), full_page=True)
    assert errors == []
    carol.close()

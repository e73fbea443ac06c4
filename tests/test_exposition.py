"""`/metrics`: the workers' snapshots summed into Prometheus families, on real servers too (issue 15)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
import websocket
from prometheus_client.parser import text_string_to_metric_families

from gusher.core.metrics import BUCKETS, Metrics
from gusher.ops import exposition
from tests.support import Client, GunicornProcess, allow, push, wait_until


def parsed(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of an exposition page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_workers_snapshots_are_summed_into_labelled_families() -> None:
    """Two workers' counters add up; histograms add bucket by bucket and come out cumulative."""
    first, second = Metrics(), Metrics()
    first.deliveries, second.deliveries = 5, 7
    first.handshakes_refused_auth = 2
    first.observe("webhook_seconds", 0.003)
    second.observe("webhook_seconds", 3.0)
    second.observe("webhook_seconds", 99.0)
    values = exposition.for_role(exposition.summed([first.snapshot(), second.snapshot()]), "slave")
    page = parsed(exposition.render(exposition.families(values)).decode())
    assert page[("gusher_messages_delivered_total", ())] == 12
    assert page[("gusher_handshakes_total", (("result", "auth"),))] == 2
    assert page[("gusher_webhook_duration_seconds_bucket", (("le", "0.005"),))] == 1
    assert page[("gusher_webhook_duration_seconds_bucket", (("le", "5.0"),))] == 2
    assert page[("gusher_webhook_duration_seconds_bucket", (("le", "+Inf"),))] == 3
    assert page[("gusher_webhook_duration_seconds_count", ())] == 3
    assert not any(name.startswith("gusher_push") for name, _ in page)  # a slave pushes nothing
    assert len(first.snapshot()["webhook_seconds"]) == len(BUCKETS) + 2


@pytest.fixture
def servers(redis_server) -> Iterator[tuple[GunicornProcess, GunicornProcess]]:
    master = GunicornProcess("master", redis_server.addr, workers=2, admin_token="metrics-admin").start()
    slave = GunicornProcess("slave", redis_server.addr, workers=2, admin_token="metrics-admin").start()
    yield master, slave
    slave.stop()
    master.stop()


def scrape(server: GunicornProcess) -> dict[tuple[str, tuple], float]:
    response = requests.get(
        f"{server.url}/metrics", headers={"Authorization": "Bearer metrics-admin"}, timeout=5
    )
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    return parsed(response.text)


def test_both_roles_serve_metrics_that_follow_what_happens(servers, app_key, clients) -> None:
    """Connections, refused handshakes, deliveries and webhook times on the slave; pushes, publications,
    push times and the cluster's slaves on the master: summed over both workers of each."""
    master, slave = servers
    for index in range(4):
        client = Client(slave.ws_url, app_key, allow(f"u{index}", "news"))
        clients.append(client)
        assert client.subscribe("news")["event"] == "gusher.subscribe_succeeded"
    with pytest.raises(websocket.WebSocketBadStatusException):
        Client(slave.ws_url, app_key, "status:403")  # the webhook refuses: a 401 handshake
    for _ in range(3):
        assert push(master.url, app_key, "news", "e", "x").status_code == 200
    assert push(master.url, "no-such-app", "news", "e", "x").status_code == 400
    for client in clients:
        for _ in range(3):
            client.recv_json()

    def slave_caught_up() -> dict | None:  # siblings report once per heartbeat interval (1 s here)
        page = scrape(slave)
        counted = (
            page[("gusher_messages_delivered_total", ())] >= 12
            # The refused handshake may have been the sibling worker's, told at its next beat.
            and page[("gusher_handshakes_total", (("result", "auth"),))] >= 1
            and page[("gusher_webhook_duration_seconds_count", ())] >= 5
        )
        return page if counted else None

    page = wait_until(slave_caught_up, 10)
    assert page[("gusher_connections", ())] == 4
    assert page[("gusher_handshakes_total", (("result", "accepted"),))] >= 4

    def master_caught_up() -> dict | None:  # the refused push may be counted by the sibling worker
        page = scrape(master)
        counted = (
            page[("gusher_messages_published_total", ())] >= 3
            and page[("gusher_pushes_total", (("result", "refused"),))] >= 1
            and page[("gusher_push_duration_seconds_count", ())] >= 4
        )
        return page if counted else None

    assert wait_until(master_caught_up, 10), "published 3, refused 1, timed 4"

    def cluster_caught_up() -> dict | None:  # each slave worker's heartbeat lands once per interval
        page = scrape(master)
        return page if _cluster_connections(page, slave.port) == 4 else None

    assert wait_until(cluster_caught_up, 10), "the master's cluster view never counted the 4 connections"


def _cluster_connections(page: dict, port: int) -> float:
    for (name, labels), value in page.items():
        if name == "gusher_cluster_connections" and dict(labels)["slave"].endswith(f"@{port}"):
            return value
    return -1.0


def test_metrics_need_the_admin_token_when_one_is_set(servers) -> None:
    """Like /api/system/*: 401 JSON without the token."""
    for server in servers:
        response = requests.get(f"{server.url}/metrics", timeout=5)
        assert response.status_code == 401 and "admin token" in response.json()["error"]


def test_the_grafana_dashboard_queries_metrics_that_exist() -> None:
    """Every metric name in deploy/grafana/gusher-dashboard.json is one gusher exposes."""
    import json
    import re
    from pathlib import Path

    dashboard = json.loads(
        (Path(__file__).parent.parent / "deploy" / "grafana" / "gusher-dashboard.json").read_text()
    )
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bgusher_\w+", target["expr"])
    }
    metrics = Metrics()
    for name in list(metrics.histograms):
        metrics.observe(name, 0.1)
    values = {**metrics.snapshot(), "connections": 1, "subscriptions": 1, "goroutines": 1, "usage-memory": 1}
    page = exposition.render(
        [*exposition.families(values), *exposition.cluster_families({"s@1": {"connections": 1}})]
    ).decode()
    exposed = {sample for sample, _ in parsed(page)}
    assert queried and queried <= exposed, queried - exposed

"""The pure parts of the harness: adapters, webhook answers, wrk parsing, statistics, report."""
# ruff: noqa: RUF001  (the report writes multiplication and division signs on purpose)

from __future__ import annotations

import json
from array import array

from bench import adapters, pushapi, report, scenarios, webhook
from bench.baseline import data_string, message

WRK_OUTPUT = """Running 5s test @ http://127.0.0.1:1/api/push/a/b/e?data=hello
  2 threads and 64 connections
  Latency Distribution
     50%  487.00us
     75%    1.20ms
     90%    2.00ms
     99%    3.97ms
  515230 requests in 5.00s, 80.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 103046.11
Transfer/sec:     16.00MB
"""


def test_parse_wrk() -> None:
    """Requests/s, percentiles in ms and the error count come out of wrk's report."""
    figures = pushapi.parse_wrk(WRK_OUTPUT)
    assert figures == {
        "api_requests_per_s": 103046.11,
        "api_p50_ms": 0.487,
        "api_p99_ms": 3.97,
        "api_errors": 7.0,
    }


def test_webhook_allows_the_test_tokens() -> None:
    """`allow:<user>:<channels>` is answered with those channels; other tokens with 403."""
    head, _, body = webhook.answer(b"auth=allow%3Au1%3Aa%2Cb").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and json.loads(body) == {"user_id": "u1", "channels": ["a", "b"]}
    assert webhook.answer(b"auth=nope").startswith(b"HTTP/1.1 403")


def test_message_carries_the_marker() -> None:
    """Every system's data has the `B|seq|sent_ns|` marker, padded to the size."""
    assert data_string(7, 123, 20) == "B|7|123|" + "x" * 12
    assert json.loads(message(7, 123, 20))["data"] == data_string(7, 123, 20)


def test_socketio_adapter_sequence() -> None:
    """open → `40`, namespace connected → one `join` per room, `joined` acks, ping → pong."""
    adapter = adapters.SocketIOAdapter()
    assert adapter.on_text(b'0{"sid":"x"}', ["r"]) == (adapters.OTHER, [b"40"])
    assert adapter.on_text(b'40{"sid":"y"}', ["r", "s"]) == (
        adapters.OTHER,
        [b'42["join","r"]', b'42["join","s"]'],
    )
    assert adapter.on_text(b'42["joined","r"]', ["r"]) == (adapters.ACK, [])
    assert adapter.on_text(b"2", ["r"]) == (adapters.OTHER, [b"3"])


def test_gusher_adapter_subscribes_each_channel() -> None:
    """The auth token names the channels; one subscribe per channel; replies are classified."""
    adapter = adapters.GusherAdapter("app")
    assert adapter.path(3, ["a", "b"]) == "/ws/app?auth=allow%3Au3%3Aa%2Cb"
    assert [json.loads(m)["data"]["channel"] for m in adapter.opening(["a", "b"])] == ["a", "b"]
    assert adapter.on_text(b'{"event":"gusher.subscribe_succeeded","data":{}}', [])[0] == adapters.ACK
    assert adapter.on_text(b'{"event":"gusher.subscribe_error","data":{}}', [])[0] == adapters.REFUSED


def test_pusher_adapter_sequence() -> None:
    """No auth query; greeting → one `pusher:subscribe` per channel; acks, refusals, ping → pong."""
    adapter = adapters.PusherAdapter("app")
    assert adapter.path(3, ["a"]) == "/app/app?protocol=7&client=js&version=8.4.0&flash=false"
    assert adapter.opening(["a"]) == []
    greeting = b'{"event":"pusher:connection_established","data":"{\\"socket_id\\":\\"1.2\\"}"}'
    kind, replies = adapter.on_text(greeting, ["a", "b"])
    assert kind == adapters.OTHER
    assert [json.loads(r) for r in replies] == [
        {"event": "pusher:subscribe", "data": {"channel": c, "auth": ""}} for c in ("a", "b")
    ]
    ack = b'{"event":"pusher_internal:subscription_succeeded","channel":"a","data":"{}"}'
    assert adapter.on_text(ack, ["a"]) == (adapters.ACK, [])
    refusal = b'{"event":"pusher:subscription_error","channel":"a","data":{"status":401}}'
    assert adapter.on_text(refusal, ["a"])[0] == adapters.REFUSED
    assert adapter.on_text(b'{"event":"pusher:error","data":{"code":4003}}', ["a"])[0] == adapters.REFUSED
    ping = b'{"event":"pusher:ping","data":"{}"}'
    assert adapter.on_text(ping, ["a"]) == (adapters.OTHER, [b'{"event":"pusher:pong","data":{}}'])
    assert adapters.needs_acks(adapters.make_adapter({"kind": "pusher", "app_key": "app"}))


def test_pusher_message_carries_the_marker_where_the_generator_finds_it() -> None:
    """A pushed Pusher message, encoded as gusher's wire/pusher.py does, yields seq and send time."""
    from gusher.core.publication import Publication
    from gusher.wire.pusher import PusherProtocol

    frame = PusherProtocol().publication(Publication.create("bench", "e", data_string(7, 123, 100)))
    payload = frame[frame.index(b"{") :]
    assert json.loads(payload)["data"] == data_string(7, 123, 100)
    _, seq, sent, _ = payload[payload.find(b"B|") :].split(b"|", 3)  # as loadgen._on_frames reads it
    assert (int(seq), int(sent)) == (7, 123)


def test_percentile() -> None:
    """Nearest-rank percentiles; empty input gives 0."""
    assert scenarios.percentile(range(1, 101), 99) == 99
    assert scenarios.percentile([5], 50) == 5
    assert scenarios.percentile([], 99) == 0


def test_report_shows_ratios() -> None:
    """The report puts each figure beside its ratio to the limit and gusher's to each peer."""
    runs = [
        {"system": "limit", "n": 10, "deliveries_per_s": 100.0},
        {"system": "gusher", "n": 10, "deliveries_per_s": 50.0},
        {"system": "pysio", "n": 10, "deliveries_per_s": 25.0},
    ]
    meta = {
        "date": "d",
        "machine": {"cpu": "c", "cores": 2, "ram_gib": 1, "kernel": "k", "fd_limit": 1},
        "versions": {"python": "3"},
    }
    text = report.render({"meta": meta, "runs": runs, "api": []}, [])
    assert "| 10 | 100 | 50.0 (0.50×) | 25.0 (0.25×) | 2.00× |" in text


class _FakePool:
    """Delivers, on `collect`, the latencies its system's last push produced."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name, self.pending = log, name, array("q")

    def reset(self) -> None:
        self.pending = array("q")

    def wait_for(self, expected: int, timeout: float, quiet: float = 0.0) -> int:
        return expected

    def collect(self) -> scenarios.Samples:
        lats = self.pending
        self.pending = array("q")
        seqs = array("q", [1] * len(lats))
        return scenarios.Samples(seqs, lats, array("q", [0] * len(lats)), len(lats), 0)


class _FakeSystem:
    def __init__(self, pool: _FakePool, lat_ms: list[float], write_ms: float = 0.0) -> None:
        self.pool, self.lat_ms, self.write_ms, self.last_write_ns = pool, lat_ms, write_ms, 0

    def push(self, channel: str, seq: int, size: int) -> int:
        self.pool.log.append(self.pool.name)
        self.pool.pending = array("q", [int(ms * 1e6) for ms in self.lat_ms])
        self.last_write_ns = int(self.write_ms * 1e6)
        return 0


def test_paired_pushes_alternate_and_compare_pair_by_pair() -> None:
    """With a reference, each push follows one of the limit's; ratios are taken per pair."""
    log: list[str] = []
    ref_pool, pool = _FakePool(log, "limit"), _FakePool(log, "system")
    reference = scenarios.Reference(_FakeSystem(ref_pool, [1.0] * 4, write_ms=10.0), ref_pool, 4)
    system = _FakeSystem(pool, [5.0, 6.0, 7.0, 12.0])
    plan = scenarios.Plan(latency_pushes=3)
    figures = scenarios.fanout_latency(system, pool, 4, plan, reference=reference)
    assert log == ["limit", "system"] * 3
    assert figures["fanout_push_p99_ms"] == 12.0
    assert figures["paired_limit_write_ms"] == 10.0
    assert figures["paired_fanout_ratio"] == 1.2
    assert figures["fanout_delivery_pct"] == 100.0


def test_headline_ratios() -> None:
    """Quick mode's fanout_ratio is the paired one; the pooled ones sit beside it."""
    from bench.run import headline

    gusher = {
        "fanout_p99_ms": 30.0,
        "fanout_push_p99_ms": 22.0,
        "paired_limit_write_ms": 20.0,
        "paired_limit_p99_ms": 25.0,
        "paired_fanout_ratio": 1.1,
    }
    out = headline(gusher, {"write_ms": 18.0, "paired_fanout_ratio": 0.98})
    assert out["limit_fanout_ms"] == 20.0
    assert out["fanout_ratio"] == 1.1
    assert out["fanout_ratio_pooled"] == 1.5
    assert out["pooled_p99_ratio"] == 1.2
    assert out["limit_paired_ratio"] == 0.98


def _pusher_round(k: int, gusher_ms: float, pusher_ms: float, gusher_rate: int, pusher_rate: int) -> dict:
    figures: dict = {"round": k, "connect_per_s_gusher": 500, "connect_per_s_pusher": 1000}
    figures.update(split_gusher=[50, 50], split_pusher=[40, 60])
    for name, ms, rate in (
        ("limit", 10.0, 100),
        ("gusher", gusher_ms, gusher_rate),
        ("pusher", pusher_ms, pusher_rate),
    ):
        figures.update(
            {
                f"fanout_p50_ms_{name}": ms,
                f"fanout_p99_ms_{name}": 2 * ms,
                f"fanout_push_p99_ms_{name}": 2 * ms,
                f"fanout_delivery_pct_{name}": 100.0,
                f"deliveries_per_s_{name}": rate,
                f"burst_rates_{name}": [rate, rate],
                f"push_p99s_{name}": [2 * ms, 2 * ms],
            }
        )
    return figures


def test_pusher_figures_are_medians_of_round_ratios_and_the_report_says_the_verdict() -> None:
    """Ratios are medians of each round's pusher ÷ gusher; above 1.1 the report says the target is missed."""
    from bench import pusher

    plan = scenarios.Plan(latency_pushes=2, bursts=2)
    rounds = [_pusher_round(0, 10.0, 10.5, 1000, 1000), _pusher_round(1, 20.0, 21.0, 2000, 1900)]
    figures = pusher.figures_of(rounds, 100, plan)
    assert figures["fanout_p50_ms_ratio"] == 1.05
    assert figures["paired_push_p99_ratio"] == 1.05
    assert figures["deliveries_per_s_ratio"] == 0.975
    assert figures["fanout_p50_ms_per_limit_gusher"] == 1.5
    assert figures["worst_split_pct"] == 60.0
    assert figures["within_1_1x"] is True
    assert "| push→receive p50, ms | 10.0 | 15.0 | 15.8 | 1.05× |  |" in report._pusher(figures)
    slow = pusher.figures_of([_pusher_round(0, 10.0, 12.0, 1000, 1000)], 100, plan)
    assert slow["within_1_1x"] is False
    assert "**missed**" in "\n".join(report._pusher(slow))


def test_the_jwt_adapter_signs_a_token_gusher_accepts() -> None:
    """Each JWT client's path carries a token that gusher's own verifier accepts (issue 16)."""
    import urllib.parse

    from bench.adapters import make_adapter
    from bench.systems import JWT_KEY
    from gusher.core import tokens

    adapter = make_adapter({"kind": "jwt", "app_key": "a", "jwt_key": JWT_KEY})
    path = adapter.path(7, ["bench"])
    token = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)["auth"][0]
    identity = tokens.verify(token, JWT_KEY)
    assert identity.user_id == "u7" and identity.allows("bench")


def test_batch_body_and_its_table() -> None:
    """The batch scenario's body is one valid batch_events body of BATCH_EVENTS channels; the
    report's batch table shows messages/s and the ratio to the limit's."""
    body = json.loads(pushapi.batch_body())
    assert len(body["batch"]) == pushapi.BATCH_EVENTS
    assert len({event["channel"] for event in body["batch"]}) == pushapi.BATCH_EVENTS
    api = [
        {"system": "limit", "api_requests_per_s": 30000.0, "batch_messages_per_s": 3_000_000.0},
        {
            "system": "gusher",
            "api_requests_per_s": 3000.0,
            "batch_messages_per_s": 120_000.0,
            "batch_p99_ms": 90,
        },
    ]
    table = "\n".join(report._api(api))
    assert "| gusher | 120,000 (0.04×) | 90.0 | 0 |" in table


def test_next_request_takes_one_whole_request_at_a_time() -> None:
    """The fast webhooks' framing: a head and its Content-Length body, pipelined requests one by
    one, nothing while a request is still arriving."""
    one = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    two = b"GET /stats HTTP/1.1\r\n\r\n"
    assert webhook.next_request(one[:-1]) is None
    assert webhook.next_request(b"POST / HTTP/1.1\r\n") is None
    head, body, rest = webhook.next_request(one + two)  # type: ignore[misc]
    assert (head, body, rest) == (b"POST / HTTP/1.1\r\nContent-Length: 3", b"abc", two)
    assert webhook.next_request(rest) == (b"GET /stats HTTP/1.1", b"", b"")


def test_the_report_shows_jwt_connects_and_the_storm_from_their_figures() -> None:
    """JWT connects sit beside webhook ones; the storm row says what came back and what was lost."""
    runs = [
        {"system": "limit", "n": 1000, "connect_per_s": 9000.0},
        {"system": "gusher", "n": 1000, "connect_per_s": 1500.0},
    ]
    jwt = "\n".join(report._connect_jwt([{"n": 1000, "connect_per_s": 3000.0, "connected": 1000}], runs))
    assert "| 1,000 | 9000 | 1500 | 3000 | 2.00× |" in jwt
    storm = {
        "n": 20000,
        "workers": 2,
        "gusher+history": {
            "all_back_s": 12.5,
            "back": 20000,
            "back_by": {"50%": 3.0, "90%": 8.0, "99%": 11.0, "100%": 12.5},
            "attempts_per_client": 1.4,
            "server_cpu_s": 30.1,
            "webhook_peak_in_flight": 90,
            "webhook_bound": 128,
            "history": {"nothing_lost": True, "pushed": 300, "missing": 0, "duplicate": 0},
        },
    }
    row = "\n".join(report._storm(storm))
    assert (
        "| gusher+history | 12.5 of 20,000 | 3.0 / 8.0 / 11.0 | 1.4 | 30.1 | 90 (128) | True (300 pushed"
        in row
    )
    assert report._storm(None) == [] and report._connect_jwt([], runs) == []

"""bench.storm's pure parts, the loadgen's reconnect-on-close bookkeeping and GusherResume."""

from __future__ import annotations

import json
import time

from bench import loadgen, storm
from bench.adapters import GusherResume


def _ok(channel: str, offset: int, epoch: str, recovered: bool | None = None) -> bytes:
    data = {"id": "0", "channel": channel, "offset": offset, "epoch": epoch}
    if recovered is not None:
        data["recovered"] = recovered
    return json.dumps({"event": "gusher.subscribe_succeeded", "data": data}).encode()


def _msg(channel: str, offset: int) -> bytes:
    return json.dumps(
        {"channel": channel, "event": "e", "data": f"B|{offset}|0|x", "offset": offset}
    ).encode()


def test_resume_first_subscribe_has_no_since_then_since_is_the_last_offset() -> None:
    r = GusherResume(["a"])
    assert "since" not in json.loads(r.opening(["a"])[0])["data"]
    r.on_subscribed(_ok("a", 4, "E1"))
    for offset in (5, 6, 7):
        r.on_message(_msg("a", offset))
    sub = json.loads(r.opening(["a"])[0])
    assert sub["event"] == "gusher.subscribe"
    assert sub["data"] == {"id": "0", "channel": "a", "since": {"offset": 7, "epoch": "E1"}}
    r.on_subscribed(_ok("a", 9, "E1", recovered=True))
    r.on_message(_msg("a", 8))
    r.on_message(_msg("a", 9))
    assert r.recovered == 1 and r.finish({"a": 9}) == (0, 0)


def test_resume_counts_gaps_duplicates_and_the_tail() -> None:
    r = GusherResume(["a", "b"])
    r.on_subscribed(_ok("a", 0, "E"))
    r.on_subscribed(_ok("b", 10, "F"))
    r.on_message(_msg("a", 1))
    r.on_message(_msg("a", 3))  # 2 missing
    r.on_message(_msg("a", 3))  # duplicate
    r.on_message(_msg("b", 11))
    assert r.finish({"a": 5, "b": 11}) == (1 + 2, 1)  # 4 and 5 never came


def test_resume_not_recovered_counts_what_lies_between() -> None:
    r = GusherResume(["a"])
    r.on_subscribed(_ok("a", 2, "E"))
    r.on_subscribed(_ok("a", 6, "E", recovered=False))
    assert r.not_recovered == 1 and r.finish({"a": 6}) == (4, 0)
    r.on_subscribed(_ok("a", 1, "NEW", recovered=False))  # a new epoch: numbering starts again
    assert r.epoch["a"] == "NEW" and r.place["a"] == 1


def test_resume_messages_before_the_first_reply_are_unplaced() -> None:
    r = GusherResume(["a"])
    r.on_message(_msg("a", 1))
    r.on_message(b'{"channel":"a","event":"e","data":"B|1|0|"}')
    assert r.unplaced == 2 and r.finish({}) == (0, 0)


def test_backoff_first_at_once_then_doubling_to_the_cap_with_jitter() -> None:
    assert loadgen.backoff(0, 0.05, 0.5, 0.9) == 0.0
    assert loadgen.backoff(1, 0.05, 0.5, 0.5) == 0.05
    assert loadgen.backoff(3, 0.05, 0.5, 0.5) == 0.2
    assert loadgen.backoff(10, 0.05, 0.5, 0.5) == 0.5
    assert loadgen.backoff(2, 0.05, 0.5, 0.0) == 0.05 and loadgen.backoff(2, 0.05, 0.5, 0.999) < 0.15


def _storm_job(conns: list[loadgen.Conn], timeout: float = 60.0) -> loadgen.StormJob:
    spec = {"host": "127.0.0.1", "port": 1, "adapter": {"kind": "bare"}, "timeout": timeout, "seed": 1}
    return loadgen.StormJob(spec, conns)


def test_storm_job_reconnects_at_once_backs_off_on_refusals_and_ends_when_all_are_back() -> None:
    conns = [loadgen.Conn(i, ["c"]) for i in range(2)]
    job = _storm_job(conns)
    assert not job.complete()  # armed, nobody closed yet
    for conn in conns:
        job.on_closed(conn, "close frame b'\\x03\\xe9'")
    assert list(job.queue) == conns and job.retries(False)
    job.queue.clear()
    job.requeue(conns[0], "Connection refused")
    assert job.refusals == {"Connection refused": 1} and not job.queue
    job.tick(time.monotonic())
    assert not job.queue  # 25-75 ms later
    job.tick(time.monotonic() + 1)
    assert list(job.queue) == [conns[0]]
    job.queue.clear()
    job.on_ready(conns[0])
    assert not job.complete()
    job.on_ready(conns[1])
    assert job.complete()
    report = job.report()
    assert report["back"] == 2 and report["armed"] == 2 and report["lost"] == 0
    assert len(report["back_at"]) == 2 * 8 and len(report["closed_at"]) == 2 * 8


def test_storm_job_gives_up_at_its_deadline() -> None:
    conn = loadgen.Conn(0, ["c"])
    job = _storm_job([conn], timeout=-1)
    job.on_closed(conn, "x")
    job.queue.clear()
    job.requeue(conn, "Connection refused")
    job.tick(time.monotonic())
    assert job.failed == 1 and job.complete()


def test_a_plain_connect_job_keeps_its_old_rules() -> None:
    conn = loadgen.Conn(0, ["c"])
    job = loadgen.ConnectJob({"host": "h", "port": 1, "adapter": {"kind": "bare"}, "items": []})
    assert job.retries(True) and not job.retries(False) and job.complete()
    job.on_closed(conn, "closed by server")
    assert not job.queue and conn.resume is None
    job.requeue(conn, "Connection refused")
    assert list(job.queue) == [conn]
    tracked = loadgen.ConnectJob(
        {
            "host": "h",
            "port": 1,
            "adapter": {"kind": "gusher", "app_key": "a"},
            "items": [(0, ["c"])],
            "resume": 1,
        }
    )
    assert isinstance(tracked.queue[0].resume, GusherResume)


def test_refusal_kinds() -> None:
    kind = storm.refusal_kind
    assert kind("Connection refused") == "connection refused"
    assert kind("recv: Connection reset by peer") == "connection reset"
    assert kind("HTTP/1.1 503 SERVICE UNAVAILABLE") == "HTTP 503"
    assert kind("HTTP/1.1 401 UNAUTHORIZED") == "HTTP 401"
    assert kind("close frame " + repr(b"\x03\xf5try again")) == "close 1013"
    assert kind("close frame " + repr(b"\x10\x04")) == "close 4100"
    assert kind('refused: {"event":"gusher.subscribe_error"}') == "subscribe_error"
    assert kind("closed by server") == "closed before ready"
    assert storm.refusals_by_kind({"Connection refused": 3, "HTTP/1.1 503 X": 1, "HTTP/1.1 503 Y": 4}) == {
        "HTTP 503": 5,
        "connection refused": 3,
    }


def test_time_to_all_quantiles_and_curve() -> None:
    backs = [10.2, 10.9, 11.0, 12.4]
    assert storm.time_to_all(backs, 4, 10.0) == 2.4
    assert storm.time_to_all(backs, 5, 10.0) is None
    assert storm.quantile_times(backs, 4, 10.0, (0.5, 1.0)) == {"50%": 0.9, "100%": 2.4}
    assert storm.curve_from(backs, 10.0, 0.5, 12.4) == [
        (0.0, 0),
        (0.5, 1),
        (1.0, 3),
        (1.5, 3),
        (2.0, 3),
        (2.5, 4),
    ]


def test_webhook_bound_and_verdict() -> None:
    assert storm.webhook_bound(2, 64, 32) == 64
    assert storm.webhook_bound(2, 16, 32) == 32
    assert storm.recovery_verdict({"clients": 3, "whole": 3}, 3)
    assert not storm.recovery_verdict({"clients": 3, "whole": 2}, 3)
    assert not storm.recovery_verdict({"clients": 2, "whole": 2}, 3)


def test_netstat_counters() -> None:
    text = (
        "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n"
        "TcpExt: 1 20 22 7\n"
        "IpExt: InNoRoutes\n"
        "IpExt: 0\n"
    )
    assert storm.netstat_counters(text) == {
        "ListenOverflows": 20,
        "ListenDrops": 22,
        "SyncookiesSent": 1,
        "TCPSynRetrans": 7,
    }


def test_storm_job_spreads_the_first_reconnect_when_asked() -> None:
    conn = loadgen.Conn(0, ["c"])
    spec = {"host": "h", "port": 1, "adapter": {"kind": "bare"}, "spread": 2.0, "seed": 3}
    job = loadgen.StormJob(spec, [conn])
    job.on_closed(conn, "closed by server")
    assert not job.queue and len(job.delayed) == 1
    job.tick(time.monotonic() + 2.0)
    assert list(job.queue) == [conn]

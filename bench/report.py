"""BENCHMARKS.md and bench/plots/*.png from a full run's figures.

`python -m bench.report [bench/results/latest.json]` rewrites both from saved
results without measuring again. Every figure is shown beside its ratio to
the limit baseline; gusher's figures also get their ratio to each peer.
"""

# The Markdown this writes uses ×, ÷ and – on purpose.
# ruff: noqa: RUF001, RUF003

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import report_shards
from bench.procs import ROOT
from bench.sampler import FAN_OUT

PLOTS = ROOT / "bench" / "plots"
OUTPUT = ROOT / "BENCHMARKS.md"
ORDER = ("limit", "gusher", "pysio", "nodesio", "nchan")
LABELS = {
    "limit": "limit baseline",
    "gusher": "gusher",
    "pysio": "Flask-SocketIO (gevent, Redis queue)",
    "nodesio": "Node Socket.IO (Redis adapter)",
    "nchan": "nchan (nginx, memory store)",
}

# (key, label, lower is better)
SECTIONS: list[tuple[str, str, list[tuple[str, str, bool]]]] = [
    (
        "Idle connections",
        "N connections held, each subscribed to one channel; server processes only.",
        [
            ("connected", "connections held", False),
            ("mem_kb_per_conn", "RSS per connection, KB ((RSS with N − RSS with 0) / N)", True),
            ("abs_kb_per_conn", "RSS / N, KB", True),
            ("idle_cpu_pct", "CPU while idle, % of one core", True),
        ],
    ),
    (
        "Fan-out latency",
        "One push at a time through the system's API to N subscribers of one channel.",
        [
            ("fanout_p50_ms", "push→receive p50, ms", True),
            ("fanout_p99_ms", "push→receive p99 over all pushes, ms", True),
            ("fanout_push_p99_ms", "push→receive p99 of one push (median over pushes), ms", True),
            ("fanout_max_ms", "push→receive max, ms", True),
            ("fanout_last_ms", "push→last subscriber (median over pushes), ms", True),
            ("fanout_delivery_pct", "delivered, %", False),
        ],
    ),
    (
        "Fan-out throughput",
        "Bursts of 20 messages published at once to one channel; steady publish rates "
        "raised until p99 > 250 ms or loss > 0.1 %.",
        [
            ("deliveries_per_s", "burst deliveries/s", False),
            ("burst_p99_ms", "burst latency p99, ms", True),
            ("burst_delivery_pct", "burst delivered, %", False),
            ("sustained_deliveries_per_s", "highest steady deliveries/s that held", False),
        ],
    ),
    (
        "Many channels",
        "Each connection in its own channel plus one of 4 shared ones: one message to each "
        "own channel (N messages), then one to each shared channel.",
        [
            ("own_deliveries_per_s", "own channels: deliveries/s", False),
            ("own_p99_ms", "own channels: latency p99, ms", True),
            ("own_publisher_alone_per_s", "own channels: publisher alone (nobody subscribed), msg/s", False),
            ("own_cpu_us_per_delivery", "own channels: server CPU per delivery, µs (all processes)", True),
            ("shared4_deliveries_per_s", "4 shared channels: deliveries/s", False),
            ("shared4_p99_ms", "4 shared channels: latency p99, ms", True),
        ],
    ),
    (
        "Connect rate",
        "N new connections, 400 in flight; gusher's include the webhook call and the subscribe.",
        [
            ("connect_per_s", "connections ready per second", False),
            ("connect_p99_ms", "connect→ready p99, ms", True),
            ("connect_cpu_ms_per_conn", "server CPU per new connection, ms (all workers)", True),
            ("webhook_cpu_ms_per_conn", "webhook CPU per new connection, ms", True),
        ],
    ),
]


CAVEATS = [
    "## Reading these figures",
    "",
    "- The box has 2 cores for everything: servers, Redis, webhook and the load generator. The generator "
    "runs niced and latencies come from kernel timestamps, but its reads still take CPU the servers "
    "could use; the limit baseline pays the same cost, so the ratios are the fair comparison.",
    "- The limit is a Python loop around `send`; its overhead is small next to the loopback send "
    "(~5–10 µs), but within run-to-run noise gusher can match or beat it on single messages; in bursts "
    "the limit makes one send per delivery (issue 4's baseline) while gusher joins what is pending for "
    'a socket into one write, so its burst figures exceed the limit. A ratio near 1× means "as fast as '
    'the kernel lets a process write".',
    "- gusher's fan-out latency includes the HTTP push to the master; the peers' includes their Redis "
    "emitter. Throughput and many-channel figures use each system's fastest publisher: gusher "
    "PUBLISHes straight into Redis (Lua scripts of 500 `PUBLISH` each), the Socket.IO peers send their "
    "Redis emitters' messages pipelined, nchan takes pipelined HTTP POSTs at its publisher location; "
    "each publisher alone (nobody subscribed) is measured in the many-channels scenario.",
    "- Memory is the RSS of the server processes only (not the kernel's ~4 KB socket buffers per "
    "connection). Per-connection = (RSS with N − RSS before connecting) / N.",
    "- Single runs on a shared machine: treat differences under ~20 % as noise; rerun `make bench` "
    "before drawing conclusions from small gaps. The paired fan-out table is the exception: both "
    "sides of each ratio are a few ms apart.",
    "- Every server, the limit included, runs in the runner's session. Linux's scheduler autogroups "
    "share the CPU between sessions first. Before 2026-11-28 the systems ran in sessions of their own "
    "while the limit and the generator shared one, which cost gusher a third of its fan-out speed "
    "against the limit. The runner also polls the generators for their counts every 50 ms, not every "
    "2 ms: the polls woke every process on the box mid fan-out, while the limit wrote with the runner "
    "asleep. Figures from before then are not comparable with these.",
    "",
    "## Quick mode",
    "",
    "`make bench-quick` (`python -m bench.run --quick [-n 5000]`) runs gusher and the limit only, in "
    "under a minute, and prints as its last line one JSON object: `connections`, `mem_kb_per_conn`, "
    "`abs_kb_per_conn`, `idle_cpu_pct`, `fanout_p50_ms`, `fanout_p99_ms`, `fanout_delivery_pct`, "
    "`limit_fanout_ms` (the limit's own time to write one frame to all the same sockets), "
    "`limit_push_p99_ms` (the limit's push→receive p99, for reference), `deliveries_per_s` and "
    "`limit_deliveries_per_s` (bursts of 20; the limit makes one send per delivery), `connect_per_s` "
    "(each client through the bench's fast auth webhook), `connect_per_s_jwt` (a second gusher whose "
    "app has a `jwt_key`: each client connects with its own HS256 token, no webhook call), "
    "`limit_connect_per_s`, `fanout_ratio`, `throughput_ratio`. The fan-out keys are measured paired: "
    "a second limit baseline holds its own N clients beside both systems and pushes once before each "
    "of their pushes. `fanout_push_p99_ms` is the median over pushes of each push's p99; "
    "`limit_fanout_ms` the reference's median write time; `fanout_ratio` the median over pairs of "
    "(gusher's push p99 ÷ the write time just before it); `fanout_ratio_pooled` the pooled p99 "
    "over all pushes ÷ `limit_fanout_ms`; `pooled_p99_ratio` gusher's pooled p99 ÷ the reference's "
    "pooled push→receive p99; `limit_paired_ratio` the limit's own paired ratio (noise alone).",
    "",
    "The harness's own tests: `python -m pytest bench/tests` (a tiny run, ~15 s).",
    "",
]


def _fmt(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if value >= 100_000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(a: Any, b: Any) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return "–"
    return f"{a / b:.2f}×"


def _index(runs: list[dict[str, Any]]) -> tuple[list[int], list[str], dict[tuple[str, int], dict[str, Any]]]:
    by = {(r["system"], r["n"]): r for r in runs}
    sizes = sorted({r["n"] for r in runs})
    systems = [s for s in ORDER if any(r["system"] == s for r in runs)]
    return sizes, systems, by


def _table(key: str, sizes: list[int], systems: list[str], by: dict) -> list[str]:
    peers = [s for s in systems if s not in ("limit", "gusher")]
    head = [
        "N",
        *[s if s == "limit" else f"{s} (÷ limit)" for s in systems],
        *[f"gusher ÷ {p}" for p in peers],
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        limit = by.get(("limit", n), {}).get(key)
        cells = [f"{n:,}"]
        for s in systems:
            value = by.get((s, n), {}).get(key)
            cells.append(_fmt(value) if s == "limit" else f"{_fmt(value)} ({_ratio(value, limit)})")
        gusher = by.get(("gusher", n), {}).get(key)
        cells += [_ratio(gusher, by.get((p, n), {}).get(key)) for p in peers]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _paired(sizes: list[int], systems: list[str], by: dict) -> list[str]:
    """Each system's push p99 ÷ the reference limit's write time, pair by pair (scenarios.Reference)."""
    if not any("paired_fanout_ratio" in by.get((s, n), {}) for s in systems for n in sizes):
        return []
    lines = [
        "**Paired with a limit baseline running alongside**: every push of the system follows one "
        "push of a second limit baseline that holds its own N clients for the whole run at this N; "
        "each figure is the median over pairs of (the push's p99 ÷ the limit's write time just "
        "before it), the measure issue 4 sets its ≤ 1.2× target on. The limit row's own figure is "
        "what noise alone gives. In brackets: the reference's median write time, ms.",
        "",
        "| N | " + " | ".join(systems) + " |",
        "|" + "---|" * (len(systems) + 1),
    ]
    for n in sizes:
        cells = [f"{n:,}"]
        for s in systems:
            run = by.get((s, n), {})
            ratio, write = run.get("paired_fanout_ratio"), run.get("paired_limit_write_ms")
            cells.append(f"{ratio:.2f}× ({_fmt(write)})" if isinstance(ratio, (int, float)) else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _sustained(sizes: list[int], systems: list[str], by: dict) -> list[str]:
    lines = ["Steady-rate steps (offered messages/s → deliveries/s, p99, delivered):", ""]
    for n in sizes:
        for s in systems:
            steps = by.get((s, n), {}).get("sustained_steps") or []
            if steps:
                text = "; ".join(
                    f"{st['rate']}/s → {_fmt(st['deliveries_per_s'])}/s, p99 {_fmt(st['p99_ms'])} ms, "
                    f"{st['delivery_pct']:.1f} %{'' if st['held'] else ' ✗'}"
                    for st in steps
                )
                lines.append(f"- {s}, N={n:,}: {text}")
    return [*lines, ""]


def _connect_jwt(jwt: list[dict[str, Any]] | None, runs: list[dict[str, Any]]) -> list[str]:
    """gusher's connect rate through the webhook beside the same connect with JWT clients."""
    if not jwt:
        return []
    rate = {(r["system"], r["n"]): r.get("connect_per_s") for r in runs}
    lines = [
        "## Connect rate: webhook and JWT (issue 16)",
        "",
        "The connect scenario again on a fresh gusher whose app has a `jwt_key`: each client brings its "
        "own HS256 token, so no webhook is called. Same N, same 400 in flight, same 2 or more workers.",
        "",
        "| N | limit | gusher, webhook | gusher, JWT | JWT ÷ webhook |",
        "|---|---|---|---|---|",
    ]
    for row in jwt:
        n, webhook = row["n"], rate.get(("gusher", row["n"]))
        lines.append(
            f"| {n:,} | {_fmt(rate.get(('limit', n)))} | {_fmt(webhook)} | {_fmt(row.get('connect_per_s'))} "
            f"| {_ratio(row.get('connect_per_s'), webhook)} |"
        )
    return [*lines, ""]


def _storm(storm: dict[str, Any] | None) -> list[str]:
    """The reconnect storm (bench/storm.py): a slave restarted under N clients."""
    if not storm:
        return []
    lines = [
        "## Reconnect storm (issue 16)",
        "",
        f"`python -m bench.storm`: {storm.get('n', 0):,} clients on a slave of {storm.get('workers')} "
        "workers, webhook auth through the bench's fast webhook; the slave is stopped (SIGTERM, every "
        "client closed with 1001) and started again on its port; every client reconnects at once, "
        "retrying with a jittered 50 ms → 0.5 s backoff. With history, pushes go on through the master "
        "during the storm and clients resubscribe with `since`; each client's offsets are then checked. "
        "The limit is restarted the same way: the generators' own ceiling for this storm.",
        "",
        "| system | all back after the port accepted, s | 50 % / 90 % / 99 % back, s | attempts per client "
        "| server CPU, s | webhook peak in flight (bound) | nothing lost |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("gusher", "gusher+history", "limit"):
        figures = storm.get(name)
        if not figures:
            continue
        back_by = figures.get("back_by") or {}
        shares = " / ".join(str(back_by.get(k, "–")) for k in ("50%", "90%", "99%"))
        peak = (
            f"{figures['webhook_peak_in_flight']} ({figures['webhook_bound']})"
            if "webhook_peak_in_flight" in figures
            else "–"
        )
        history = figures.get("history")
        lost = (
            f"{history['nothing_lost']} ({history['pushed']} pushed, {history['missing']} missing, "
            f"{history['duplicate']} duplicates)"
            if history
            else "–"
        )
        lines.append(
            f"| {name} | {figures.get('all_back_s')} of {figures.get('back', 0):,} | {shares} "
            f"| {figures.get('attempts_per_client')} | {figures.get('server_cpu_s')} | {peak} | {lost} |"
        )
    if storm.get("gusher_vs_limit"):
        lines += ["", f"gusher ÷ limit (time to all back): {storm['gusher_vs_limit']}×."]
    return [*lines, ""]


def _api(api: list[dict[str, Any]]) -> list[str]:
    if not api:
        return ["Not measured (wrk missing: run bench/setup.sh).", ""]
    limit = next((a for a in api if a["system"] == "limit"), {})
    lines = ["| system | requests/s (÷ limit) | p50 ms | p99 ms | errors |", "|---|---|---|---|---|"]
    for a in api:
        lines.append(
            f"| {a['system']} | {_fmt(a.get('api_requests_per_s'))} "
            f"({_ratio(a.get('api_requests_per_s'), limit.get('api_requests_per_s'))}) | "
            f"{_fmt(a.get('api_p50_ms'))} | {_fmt(a.get('api_p99_ms'))} | {int(a.get('api_errors', 0))} |"
        )
    lines.append("")
    if any("batch_messages_per_s" in a for a in api):
        lines += [
            "`POST /api/apps/{app}/batch_events`, 100 events to 100 channels per body, JSON, wrk "
            "(2 threads, 32 connections, 5 s), nobody subscribed; messages/s = requests/s × 100.",
            "",
            "| system | messages/s (÷ limit) | p99 ms | errors |",
            "|---|---|---|---|",
        ]
        for a in api:
            lines.append(
                f"| {a['system']} | {_fmt(a.get('batch_messages_per_s'))} "
                f"({_ratio(a.get('batch_messages_per_s'), limit.get('batch_messages_per_s'))}) | "
                f"{_fmt(a.get('batch_p99_ms'))} | {int(a.get('batch_errors', 0))} |"
            )
        lines.append("")
    return lines


def plot(runs: list[dict[str, Any]]) -> list[str]:
    """PNG plots, gusher and the peers on the same axes; returns the file names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    sizes, systems, by = _index(runs)
    PLOTS.mkdir(exist_ok=True)
    charts = [
        ("latency_vs_n.png", "fanout_p99_ms", "fan-out push→receive p99 (ms)", True),
        ("memory_vs_n.png", "mem_kb_per_conn", "RSS per idle connection (KB)", False),
        ("throughput_vs_n.png", "deliveries_per_s", "burst deliveries per second", True),
        ("connect_rate_vs_n.png", "connect_per_s", "new connections per second", True),
    ]
    names = []
    for name, key, label, log_y in charts:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for s in systems:
            points = [
                (n, by[(s, n)][key]) for n in sizes if isinstance(by.get((s, n), {}).get(key), (int, float))
            ]
            if points:
                style = "--" if s == "limit" else "-"
                ax.plot(*zip(*points, strict=True), style, marker="o", label=LABELS.get(s, s))
        ax.set_xscale("log")
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel("connections (N)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(PLOTS / name, dpi=110)
        plt.close(fig)
        names.append(name)
    return names


def _duration(meta: dict[str, Any]) -> str:
    seconds = meta.get("duration_s")
    return f", in {seconds / 60:.0f} min" if seconds else ""


def render(results: dict[str, Any], plots: list[str]) -> str:
    meta, runs = results["meta"], [r for r in results["runs"] if "error" not in r]
    sizes, systems, by = _index(runs)
    machine = meta["machine"]
    out = [
        "# Benchmarks",
        "",
        f"Generated by `make bench` (`python -m bench.run`) on {meta['date']}"
        f"{_duration(meta)}. "
        "Raw figures: `bench/results/latest.json` (not committed). Quick check: `make bench-quick`.",
        "",
        "## Machine and versions",
        "",
        f"- CPU: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
        f"Linux {machine['kernel']}, "
        f"{machine['fd_limit']} descriptors per process"
        + (f", net.core.somaxconn {machine['somaxconn']:,}" if machine.get("somaxconn") else "")
        + (
            f"; load average {machine['load_avg_at_start']} when the run started (other work on the box "
            "adds noise)"
            if "load_avg_at_start" in machine
            else ""
        ),
        "- " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "## How it is measured",
        "",
        "- Everything runs on this one box over loopback: the servers, one Redis (valkey), the webhook "
        "(`bench/webhook.py`, asyncio), and the load generator (`bench/loadgen.py`: raw non-blocking sockets "
        "on epoll, its own WebSocket framing, several processes of ≤ 12,000 sockets, each from its own "
        "127.0.1.x source address, run at nice 5 so the servers get the CPU first).",
        "- Latency is push → kernel receive: each message carries its send time (wall clock, ns) and the "
        "client reads the kernel's receive timestamp (SO_TIMESTAMPNS), so the client's own delay does "
        "not count.",
        "- **limit baseline** (`bench/baseline.py`): as many processes as the system has workers, each "
        "writes one pre-built frame to each of its sockets with one non-blocking "
        "`send` — the kernel's work with a Python loop around it. It answers plain HTTP with a canned 200, "
        "the floor of the push-API scenario. ÷ limit < 1 for a rate, or > 1 for a time, is the server's "
        "overhead.",
        "- Every system gets the same N, message size (100 bytes of data), client, Redis and worker count "
        "(max(2, N / 12,500) processes on 2 cores). gusher pushes through `POST /api/push` for the latency "
        "scenario and PUBLISHes into Redis (pipelined) for throughput; the peers use their Redis emitters "
        "(same pipelining).",
        "- Peers are configured as their docs recommend for production with several processes: "
        "WebSocket-only transport (so no sticky sessions), Redis message queue / adapter; Node with "
        "`bufferutil` + `utf-8-validate` and the upgrade request dropped after the handshake.",
        "- **nchan** (`bench/peers/nchan.py`, Debian's libnginx-mod-nchan) is the compiled peer: nginx "
        "with as many workers as the others, its memory store (no Redis), WebSocket subscribers at "
        "`/sub/<channel>`; its pushes are `POST /pub/<channel>` with the data as the body (sent to "
        "each subscriber as the text frame), and throughput and many-channel publishes are those POSTs "
        "pipelined on one kept-alive connection.",
        "",
    ]
    if results.get("skipped"):
        out += [f"Not measured (not installed): {', '.join(results['skipped'])}.", ""]
    failed = [r for r in results["runs"] if "error" in r]
    if failed:
        out += [
            "Runs that failed: " + "; ".join(f"{r['system']} N={r['n']}: {r['error']}" for r in failed),
            "",
        ]
    for title, intro, metrics in SECTIONS:
        out += [f"## {title}", "", intro, ""]
        for key, label, lower in metrics:
            out += [f"**{label}** ({'lower' if lower else 'higher'} is better)", ""]
            out += [*_table(key, sizes, systems, by), ""]
        if title == "Fan-out latency":
            out += _paired(sizes, systems, by)
        if title == "Fan-out throughput":
            out += _sustained(sizes, systems, by)
    out += _connect_jwt(results.get("connect_jwt"), runs)
    out += _storm(results.get("storm"))
    out += [
        "## Push API",
        "",
        "`POST /api/push/{app}/{channel}/{event}?data=hello` with wrk "
        "(2 threads, 64 keep-alive connections, 5 s), gusher master with 2 workers; the limit answers "
        "a canned 200.",
        "",
    ]
    out += _api(results.get("api", []))
    out += _history(results.get("history"))
    out += _pusher(results.get("pusher"))
    out += report_shards.section(results.get("shards"))
    if plots:
        out += ["## Plots", ""] + [f"![{p}](bench/plots/{p})" for p in plots] + [""]
    out += CAVEATS
    return "\n".join(out)


def _history(figures: dict[str, Any] | None) -> list[str]:
    """What numbered history costs (bench/history.py), history off beside on in one run."""
    if not figures:
        return []

    def pair(key: str) -> str:
        first, second = figures.get(f"{key}_off"), figures.get(f"{key}_off2")
        return " / ".join(str(v) for v in (first, second) if v is not None)

    def pair_on(key: str) -> str:
        first, second = figures.get(f"{key}_on"), figures.get(f"{key}_on2")
        return " / ".join(str(v) for v in (first, second) if v is not None)

    return [
        "## History (issue 12)",
        "",
        "`python -m bench.history`: apps with `history_size` 100 and `history_ttl` 300 against apps "
        "without, on the same servers or in alternation, in one run. Every push to a history app runs "
        "the Lua script that numbers, keeps and publishes it.",
        "",
        "| figure | history off | history on | on ÷ off |",
        "|---|---|---|---|",
        "| push API requests/s (wrk, 64 connections, median of rounds) "
        f"| {figures.get('api_rps_history_off')} | {figures.get('api_rps_history_on')} "
        f"| {figures.get('api_rps_ratio')} |",
        f"| push API p99 ms | {figures.get('api_p99_ms_history_off')} "
        f"| {figures.get('api_p99_ms_history_on')} | |",
        f"| fan-out to N={figures.get('n')}: paired ratio ÷ limit (two runs each) | {pair('fanout_ratio')} "
        f"| {pair_on('fanout_ratio')} | |",
        f"| fan-out p99 ms | {pair('fanout_p99_ms')} | {pair_on('fanout_p99_ms')} | |",
        f"| bursts, deliveries/s | {pair('deliveries_per_s')} | {pair_on('deliveries_per_s')} | |",
        "",
        f"Redis memory per kept message: {figures.get('redis_bytes_per_kept_message')} bytes "
        f"(`used_memory` growth over {figures.get('kept_messages')} kept messages, 100 channels of 100, "
        "100-byte data: the stream entry with its payload and time, and the channel's share of its "
        "stream and meta hash).",
        "",
    ]


def _pusher(figures: dict[str, Any] | None) -> list[str]:
    """Pusher-protocol clients beside gusher-protocol ones (bench/pusher.py), at one N in one run."""
    if not figures:
        return []
    f = figures

    def row(label: str, key: str, paired: str = "") -> str:
        cells = " | ".join(_fmt(f.get(f"{key}_{name}")) for name in ("limit", "gusher", "pusher"))
        return f"| {label} | {cells} | {_times(f.get(f'{key}_ratio'))} | {paired} |"

    bursts = [v for r in f["per_round"] for name in ("gusher", "pusher") for v in r[f"burst_rates_{name}"]]
    verdict = "met" if f.get("within_1_1x") else "**missed**"
    lines = [
        "## Pusher protocol (issue 13)",
        "",
        f"`python -m bench.pusher`, run on {f.get('date', '–')} "
        "(`--quick` runs N=2,000 in 2 rounds instead): "
        f"one master and one slave (2 workers) hold at once N={f['n']:,} gusher-protocol clients "
        "(`/ws/{key}`) and N Pusher-protocol-7 clients "
        "(`/app/{key}`, public channel, `pusher:ping` answered), each set on channel `bench` of an app of "
        "its own; a limit baseline holds N more: the load generator and the kernel alone. Each of "
        f"{f['rounds']} rounds connects both sets afresh, then sends {f['pushes_per_round']} steps of one "
        "push through the master to each set in turn (the limit first, then the two protocols, which "
        f"first alternating) and {f['bursts_per_round']} such steps of a burst of 20 messages PUBLISHed "
        "into Redis. Figures are medians over rounds; pusher ÷ gusher is the median over rounds of each "
        "round's ratio; paired, the median over steps of (the Pusher push or burst ÷ the gusher one of "
        "the same step).",
        "",
        "| figure | limit (the generator alone) | gusher protocol | Pusher protocol | pusher ÷ gusher "
        "| paired |",
        "|---|---|---|---|---|---|",
        row("push→receive p50, ms", "fanout_p50_ms"),
        row("push→receive p99 over a round's pushes, ms", "fanout_p99_ms"),
        row(
            "p99 of one push (median over pushes), ms",
            "fanout_push_p99_ms",
            _times(f.get("paired_push_p99_ratio")),
        ),
        row("burst deliveries/s", "deliveries_per_s", _times(f.get("paired_deliveries_per_s_ratio"))),
        "",
        f"Target, within 1.1× (latency ratios ≤ 1.1, deliveries/s ratio ≥ 1 ÷ 1.1): {verdict}. "
        f"Delivered: {f.get('fanout_delivery_pct_gusher')} % / {f.get('fanout_delivery_pct_pusher')} % "
        f"of the pushes' deliveries. Single bursts ranged from {_fmt(min(bursts))} to "
        f"{_fmt(max(bursts))} deliveries/s on this shared box (the JSON's `per_round` keeps each push and "
        "burst), so deliveries/s is the least certain figure. Connections/s: gusher "
        f"{_fmt(f.get('connect_per_s_gusher'))} (each through the auth webhook), Pusher "
        f"{_fmt(f.get('connect_per_s_pusher'))} (public channels need none); a worker held at most "
        f"{f.get('worst_split_pct')} % of a set.",
        "",
    ]
    return lines + _pusher_profile(f.get("profile"))


def _pusher_profile(profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return []
    shares = {name: profile[name]["inclusive_pct"] for name in ("gusher", "pusher")}
    cells = [
        f"`{frame.split(' ')[0]}` {shares['gusher'][frame]} % / {shares['pusher'][frame]} %"
        for frame in FAN_OUT
    ]
    return [
        "py-spy on both slave workers (`--profile DIR`) while only one set was pushed to, a push and a "
        "burst again and again, share of the samples with the gusher set / with the Pusher set: "
        + ", ".join(cells)
        + ". The hub encodes a message once per worker and protocol, then writes the same bytes to "
        "every subscriber.",
        "",
    ]


def _times(ratio: Any) -> str:
    return f"{ratio:.2f}×" if isinstance(ratio, (int, float)) else "–"


def write(results: dict[str, Any]) -> None:
    """Rewrite BENCHMARKS.md and the plots."""
    plots = plot([r for r in results["runs"] if "error" not in r])
    OUTPUT.write_text(render(results, plots))


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "latest.json"
    write(json.loads(path.read_text()))
    print(f"rewrote {OUTPUT} from {path}")

"""The `gusher` command: `up` runs everything for real; `master`/`slave` start the seed's roles."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib
import requests

from gusher.embedded import free_port, wait_for_port
from tests.support import Client, wait_until


def _up(tmp_path, *flags: str) -> tuple[subprocess.Popen[str], Path, int, int]:
    """`gusher up FLAGS` with no REDIS_ADDR, its TMPDIR `tmp_path/tmp`, on free master and slave ports."""
    master_port, slave_port = free_port(), free_port()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_ADDR"}
    env.update(
        MASTER_API_LISTEN=f"127.0.0.1:{master_port}",
        API_LISTEN=f"127.0.0.1:{slave_port}",
        GUSHER_ENV_FILE=str(tmp_path / "none.env"),
        PYTHONUNBUFFERED="1",
        TMPDIR=str(scratch),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gusher.cli", "up", *flags],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, scratch, master_port, slave_port


def _banner(process: subprocess.Popen[str]) -> list[str]:
    """What `gusher up` prints until its last banner line."""
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, "gusher up exited early:\n" + "".join(lines)
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            break
    return lines


def _push_reaches_a_client(lines: list[str], slave_port: int) -> None:
    """The banner's curl line pushes to a client of the slave on the channel `demo`."""
    curl = re.search(r"curl .*", next(line for line in lines if "push to it:" in line)).group(0)
    client = Client(f"ws://127.0.0.1:{slave_port}", "demo", "anything")
    try:
        assert client.subscribe("demo")["event"] == "gusher.subscribe_succeeded"
        assert requests.post(shlex.split(curl)[-1], timeout=5).status_code == 200
        assert client.recv_json() == {"channel": "demo", "event": "hello", "data": "hi there"}
    finally:
        client.close()


def _stop_cleanly(process: subprocess.Popen[str], scratch: Path, ports: list[int]) -> None:
    """SIGTERM stops it with everything it started: no port listens, its TMPDIR is empty."""
    process.send_signal(signal.SIGTERM)
    process.wait(30)
    for port in ports:
        wait_until(lambda port=port: not _listening(port), 10)
    assert list(scratch.iterdir()) == []


def test_up_runs_a_working_demo(tmp_path) -> None:
    """`gusher up` with no REDIS_ADDR: embedded Redis, demo app, master, slave, and a working curl
    line; stopped, it leaves nothing in its temporary directory (issue 15: runs left files in /tmp)."""
    process, scratch, master_port, slave_port = _up(tmp_path)
    try:
        lines = _banner(process)
        curl = re.search(r"curl .*", next(line for line in lines if "push to it:" in line)).group(0)
        # Issue 15: the embedded Redis's random port is printed where a user looks, as a redis-cli line.
        redis_line = next(line for line in lines if "redis-cli" in line)
        host, port = re.search(r"redis-cli -h (\S+) -p (\d+)", redis_line).groups()
        assert redis_lib.Redis(host=host, port=int(port)).hget("demo", "url")
        assert requests.get(f"http://127.0.0.1:{slave_port}/demo", timeout=5).status_code == 200
        demo = re.search(r"http://\S+/demo\S*", next(line for line in lines if "demo page:" in line)).group(0)
        assert demo.startswith(f"http://127.0.0.1:{master_port}/demo?slave=127.0.0.1:{slave_port}")
        assert requests.get(demo, timeout=5).status_code == 200  # the full demo, on the master
        client = Client(f"ws://127.0.0.1:{slave_port}", "demo", "anything")
        assert client.subscribe("demo")["event"] == "gusher.subscribe_succeeded"
        url = shlex.split(curl)[-1]
        assert requests.post(url, timeout=5).status_code == 200
        assert client.recv_json() == {"channel": "demo", "event": "hello", "data": "hi there"}
        users = wait_until(  # the demo webhook makes `auth` the user: the demo's "who is online"
            lambda: requests.get(f"http://127.0.0.1:{master_port}/api/apps/demo/users", timeout=5).json()[
                "users"
            ],
            10,
        )
        assert users == [{"id": "anything", "connections": 1}]
        client.close()
        console = re.search(r"http://\S+/ui", next(line for line in lines if "console:" in line)).group(0)
        assert requests.get(console, timeout=5).status_code == 200  # the admin console, from loopback
        assert requests.get(console + "/api/cluster", timeout=5).json()["slaves"]
    finally:
        _stop_cleanly(process, scratch, [master_port, slave_port])


def test_up_cluster_runs_the_demo_on_a_local_valkey_cluster(tmp_path) -> None:
    """`gusher up --cluster`: three primaries own every slot, their addresses in the banner; master
    and slave run on its redis+cluster:// URL and the banner's curl line reaches a slave's client;
    stopped, no node listens and its TMPDIR is empty."""
    process, scratch, master_port, slave_port = _up(tmp_path, "--cluster")
    nodes: list[tuple[str, int]] = []
    try:
        lines = _banner(process)
        listed = next(line for line in lines if "embedded Valkey Cluster" in line)
        nodes = [(host, int(port)) for host, port in re.findall(r"(127\.0\.0\.1):(\d+)", listed)]
        assert len(nodes) == 3
        url = "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in nodes)
        assert any(f"(Redis {url})" in line for line in lines)
        host, port = re.search(r"redis-cli -c -h (\S+) -p (\d+)", "".join(lines)).groups()
        assert (host, int(port)) == nodes[0]
        admin = redis_lib.RedisCluster(host=host, port=int(port))
        try:
            assert admin.cluster_info()["cluster_state"] == "ok"
            primaries = admin.cluster_nodes()
            assert sorted(primaries) == sorted(f"{h}:{p}" for h, p in nodes)
            assert all("master" in node["flags"] for node in primaries.values())
            assert admin.hget("demo", "url")  # `gusher up` wrote its demo app into the cluster
        finally:
            admin.close()
        _push_reaches_a_client(lines, slave_port)
    finally:
        _stop_cleanly(process, scratch, [master_port, slave_port, *(port for _, port in nodes)])


def _listening(port: int) -> bool:
    try:
        wait_for_port("127.0.0.1", port, 0.1)
        return True
    except TimeoutError:
        return False


def test_master_command_reads_the_seed_env_flag(tmp_path, redis_server, app_key) -> None:
    """`gusher -env FILE master` starts the master configured by that .env file."""
    port = free_port()
    env_file = tmp_path / "custom.env"
    env_file.write_text(
        f"REDIS_ADDR={redis_server.addr}\nMASTER_API_LISTEN=127.0.0.1:{port}\nGUSHER_MASTER_WORKERS=1\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("REDIS_ADDR", "MASTER_API_LISTEN", "GUSHER_ENV_FILE")
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gusher.cli", "-env", str(env_file), "master"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port, 30)
        response = requests.get(f"http://127.0.0.1:{port}/api/check/{app_key}", timeout=5)
        assert response.json() == {"app_key": app_key}
    finally:
        process.terminate()
        process.wait(20)


def test_up_on_a_taken_port_says_so_and_exits_before_any_banner(tmp_path) -> None:
    """Issue 15: `make run` with its slave port taken names the port and exits non-zero at once,
    before starting anything (it used to print its banner and never exit)."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "REDIS_ADDR"}
    env.update(
        MASTER_API_LISTEN=f"127.0.0.1:{free_port()}",
        API_LISTEN=f"127.0.0.1:{taken}",
        GUSHER_ENV_FILE=str(tmp_path / "none.env"),
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "gusher.cli", "up"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        holder.close()
    assert run.returncode == 2
    assert f"127.0.0.1:{taken} is already in use" in run.stderr
    assert "gusher is running" not in run.stdout and "embedded Redis" not in run.stdout


def test_ctrl_c_stops_the_roles_quietly_and_closes_clients_with_1001(tmp_path, redis_server, app_key) -> None:
    """Issue 15: Ctrl-C (SIGINT to the whole foreground group) on `gusher master` / `gusher slave`
    exits 0 without a SystemExit traceback per worker, and a slave's clients get 1001."""
    for role, listen in (("master", "MASTER_API_LISTEN"), ("slave", "API_LISTEN")):
        port = free_port()
        env = dict(os.environ, REDIS_ADDR=redis_server.addr, GUSHER_ENV_FILE=str(tmp_path / "none.env"))
        env.update({listen: f"127.0.0.1:{port}", "GUSHER_MASTER_WORKERS": "2", "GUSHER_SLAVE_WORKERS": "2"})
        process = subprocess.Popen(
            [sys.executable, "-m", "gusher.cli", role],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        client = None
        try:
            wait_for_port("127.0.0.1", port, 20)
            url = f"http://127.0.0.1:{port}/healthz"
            wait_until(lambda url=url: requests.get(url, timeout=2).status_code == 200)
            if role == "slave":
                client = Client(f"ws://127.0.0.1:{port}", app_key, "allow:u:c")
            os.killpg(process.pid, signal.SIGINT)
            output, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, output[-3000:]
        assert "Traceback" not in output and "SystemExit" not in output, output[-3000:]
        if client is not None:
            assert client.recv_close() == (1001, "server shutting down")


def test_help_lists_every_command_and_the_seeds_flag() -> None:
    """Issue 15: `gusher --help` shows `sign` and spells the seed's flag `-env`; it says where the
    command lives when it is not on PATH."""
    shown = subprocess.run(
        [sys.executable, "-m", "gusher.cli", "--help"], capture_output=True, text=True, timeout=30
    ).stdout
    assert "{master,slave,up,sign,apps,push,stats}" in shown and "-env FILE" in shown
    assert ".venv/bin/gusher" in shown
    signed = subprocess.run(
        [sys.executable, "-m", "gusher.cli", "sign", "--secret", "s", "http://m/api/check/a"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert signed.returncode == 0 and signed.stdout.startswith("curl ")

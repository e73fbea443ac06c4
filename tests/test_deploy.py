"""The deployment files: what can be checked without a Docker engine or systemd running (docs/DEPLOY.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gusher.embedded import free_port
from tests.support import GunicornProcess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())


def _instruction(name: str) -> list[str]:
    """The arguments of each `NAME` instruction of the Dockerfile (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def test_the_image_is_slim_unprivileged_and_runs_gusher() -> None:
    """Slim base, a non-root user, the `gusher` entry point, and every file it copies exists."""
    assert _instruction("FROM")[0].endswith("-slim")
    assert _instruction("USER") == ["gusher"]
    assert json.loads(_instruction("ENTRYPOINT")[0]) == ["gusher"]
    for copied in _instruction("COPY"):
        for name in copied.split()[:-1]:
            assert (ROOT / name).exists(), name


def test_the_image_holds_gusher_compiled() -> None:
    """gunicorn imports gusher from the image's working directory, where no worker may write a .pyc."""
    assert any(
        "compileall" in run and " gusher " in f" {run} " and "wsgi_slave.py" in run
        for run in _instruction("RUN")
    )


def _healthcheck_code() -> str:
    command = json.loads(_instruction("HEALTHCHECK")[0].split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    return command[2]


@pytest.mark.parametrize("role", ["master", "slave"])
def test_the_images_health_check_asks_the_roles_healthz(redis_server, role) -> None:
    """The HEALTHCHECK's own code: 0 against a ready server of GUSHER_ROLE, non-zero where none listens."""
    server = GunicornProcess(role, redis_server.addr, workers=1).start()
    listen = "MASTER_API_LISTEN" if role == "master" else "API_LISTEN"
    env = dict(os.environ, GUSHER_ROLE=role)

    def check(port: int) -> int:
        env[listen] = f":{port}"
        return subprocess.run([sys.executable, "-c", _healthcheck_code()], env=env, timeout=10).returncode

    try:
        assert check(server.port) == 0
        assert check(free_port()) != 0
    finally:
        server.stop()


def test_the_compose_file_runs_valkey_a_master_two_slaves_and_nginx() -> None:
    """Each gusher service's role matches its command and it uses the compose valkey; nginx has its site."""
    services = COMPOSE["services"]
    assert set(services) == {"valkey", "master", "slave1", "slave2", "nginx"}
    for name in ("master", "slave1", "slave2"):
        service = services[name]
        role = service["command"][0]
        assert service["environment"]["GUSHER_ROLE"] == role == ("master" if name == "master" else "slave")
        assert service["environment"]["REDIS_ADDR"] == "valkey:6379"
        assert service["depends_on"]["valkey"]["condition"] == "service_healthy"
        assert (ROOT / "deploy" / "compose" / service["build"]["context"] / "Dockerfile").exists()
    mount = services["nginx"]["volumes"][0].split(":")[0]
    assert (ROOT / "deploy" / "compose" / mount).exists()


def test_the_compose_nginx_site_is_deploy_nginx_conf() -> None:
    """Only the upstream servers differ, so tests/test_nginx.py vouches for both files."""

    def body(path: Path) -> list[str]:
        lines = [line.strip() for line in path.read_text().splitlines()]
        return [
            line for line in lines if (line and not line.startswith(("#", "server "))) or "listen" in line
        ]

    ours, compose = ROOT / "deploy" / "nginx.conf", ROOT / "deploy" / "compose" / "nginx.conf"
    assert body(ours) == body(compose)
    assert "server slave1:8000" in compose.read_text() and "server master:7999" in compose.read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_verify_without_a_warning(tmp_path) -> None:
    """`systemd-analyze verify` passes both units (ExecStart pointed at this checkout's .venv)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    units = []
    for source, name in (
        ("gusher-master.service", "gusher-master.service"),
        ("gusher-slave@.service", "gusher-slave@8000.service"),
    ):
        text = (
            (ROOT / "deploy" / "systemd" / source)
            .read_text()
            .replace("/opt/gusher/.venv/bin/gunicorn", str(gunicorn))
        )
        (tmp_path / name).write_text(text)
        units.append(str(tmp_path / name))
    done = subprocess.run(["systemd-analyze", "verify", *units], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr

"""A real nginx (Debian's) running the repository's deploy/nginx.conf, pointed at a test's processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from gusher.embedded import free_port, wait_for_port
from tests.support import ROOT

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

needs_nginx = pytest.mark.skipif(
    NGINX is None and not (os.environ.get("CI") or os.environ.get("GUSHER_CI")),
    reason="nginx not installed (.ci/run installs it)",
)

MAIN_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    include {dir}/gusher.conf;
}}
"""


class Nginx:
    """deploy/nginx.conf with its ports pointed at this test's processes."""

    def __init__(self, slave_ports: list[int], master_port: int, read_timeout: int) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gusher-nginx-"))
        os.chmod(self.dir, 0o777)
        site = (ROOT / "deploy" / "nginx.conf").read_text()
        site = site.replace("127.0.0.1:8000", f"127.0.0.1:{slave_ports[0]}")
        site = site.replace("127.0.0.1:8001", f"127.0.0.1:{slave_ports[1]}")
        site = site.replace("127.0.0.1:7999", f"127.0.0.1:{master_port}")
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{self.port};")
        site = site.replace("proxy_read_timeout 60s;", f"proxy_read_timeout {read_timeout}s;")
        (self.dir / "gusher.conf").write_text(site)
        (self.dir / "nginx.conf").write_text(MAIN_CONF.format(dir=self.dir))
        assert NGINX is not None, "nginx is required in CI"
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.dir / "nginx.conf"), "-p", str(self.dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for_port("127.0.0.1", self.port, 10)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

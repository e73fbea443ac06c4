"""Hosts of their own for the multi-host tests: Linux network namespaces joined by a bridge.

Each host is a network namespace with one interface, `eth0`, holding the
host's IP in a private /24 chosen so that it overlaps nothing this machine
routes. Its veth pair's other end is a port of a bridge in one more
namespace, the switch. The test process stays in the root namespace and gets
a veth into the switch too, with the subnet's `.1` (`gateway`): it reaches
every host, and every host reaches it (a webhook bound there).

The bridge sits in a namespace of its own rather than in the root one: with
`br_netfilter` loaded (docker loads it), frames crossing a root-namespace
bridge go through the root's iptables FORWARD chain, which docker sets to
DROP; a fresh namespace has no rules.

`cut(host)` sets the host's bridge port down: its `eth0` loses carrier, and
nothing goes in or out, neither its clients nor its Redis traffic, as when
its cable is pulled. `restore(host)` sets it up again.

Names carry the test process's pid (`gusher<pid>-<host>`, interfaces
`gh<pid>…`), so two runs never collide; `stop` SIGKILLs whatever still runs
inside the run's namespaces (only processes the run started can be there),
then deletes the namespaces, which takes every veth and the bridge with them.
`sweep_stale` removes what a run killed before its teardown left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence

PREFIX = "gusher"
_NAMESPACE = re.compile(rf"^{PREFIX}(\d+)-")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


def sweep_stale() -> None:
    """Delete the namespaces of earlier runs whose process is gone (killed before teardown)."""
    for name in _namespaces():
        match = _NAMESPACE.match(name)
        if match and not _alive(int(match.group(1))):
            _kill_inside(name)
            _ip("netns", "delete", name, check=False)


def _namespaces() -> list[str]:
    listed = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(namespace: str) -> None:
    for pid in _ip("netns", "pids", namespace, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def free_subnet(seed: int) -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that overlaps no address or route of the root namespace."""
    taken = []
    for line in _ip("-4", "-o", "addr", "show").stdout.splitlines():
        taken.append(ipaddress.ip_interface(line.split()[3]).network)
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "unreachable", "blackhole", "prohibit", "local", "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            taken.append(ipaddress.ip_network(first, strict=False))
    for step in range(65536):
        index = (seed + step * 7919) % 65536
        candidate = ipaddress.IPv4Network(f"10.{index >> 8}.{index & 255}.0/24")
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise RuntimeError("no free 10.x.y.0/24 on this machine")


class Network:
    """Hosts (namespaces, one IP each) on one bridge; the test process is the gateway `.1`."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.run_id = os.getpid()
        self.hosts = list(hosts)
        self.subnet = free_subnet(self.run_id)
        addresses = list(self.subnet.hosts())
        self.gateway = str(addresses[0])
        self._ips = {host: str(addresses[index + 1]) for index, host in enumerate(self.hosts)}
        self._switch = f"{PREFIX}{self.run_id}-switch"
        self._uplink = f"gh{self.run_id}up"  # in the root namespace
        self._made: list[str] = []  # namespaces, in the order they were made

    # -- names -----------------------------------------------------------------------

    def namespace(self, host: str) -> str:
        return f"{PREFIX}{self.run_id}-{host}"

    def ip(self, host: str) -> str:
        return self._ips[host]

    def launcher(self, host: str) -> tuple[str, ...]:
        """The command prefix that runs a program inside `host`."""
        return ("ip", "netns", "exec", self.namespace(host))

    def run_in(self, host: str, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside `host` and return its outcome (output captured, not checked)."""
        return subprocess.run([*self.launcher(host), *argv], capture_output=True, text=True, timeout=30)

    def _port(self, host: str) -> str:
        return f"gh{self.run_id}p{self.hosts.index(host)}"  # the host's port on the bridge

    # -- life --------------------------------------------------------------------------

    def start(self) -> Network:
        """Make the switch, every host and the uplink; undo everything when a step fails."""
        try:
            self._add_namespace(self._switch)
            _ip("-n", self._switch, "link", "add", "br0", "type", "bridge", "forward_delay", "0")
            _ip("-n", self._switch, "link", "set", "br0", "up")
            for host in self.hosts:
                self._add_host(host)
            _ip("link", "add", self._uplink, "type", "veth", "peer", "name", "uplink", "netns", self._switch)
            _ip("-n", self._switch, "link", "set", "uplink", "master", "br0", "up")
            _ip("addr", "add", f"{self.gateway}/{self.subnet.prefixlen}", "dev", self._uplink)
            _ip("link", "set", self._uplink, "up")
        except BaseException:
            self.stop()
            raise
        return self

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _add_host(self, host: str) -> None:
        namespace, port = self.namespace(host), self._port(host)
        self._add_namespace(namespace)
        peer = ("peer", "name", "eth0", "netns", namespace)
        _ip("-n", self._switch, "link", "add", port, "type", "veth", *peer)
        _ip("-n", self._switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{self.ip(host)}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")

    def stop(self) -> None:
        """Kill what still runs inside, delete every namespace (their veths and the bridge go too)."""
        for name in reversed(self._made):
            _kill_inside(name)
            _ip("netns", "delete", name, check=False)
        self._made = []
        _ip("link", "delete", self._uplink, check=False)  # gone with the switch already, normally

    def leftovers(self) -> list[str]:
        """This run's namespaces and root-namespace links still present (empty after `stop`)."""
        mine = [name for name in _namespaces() if name.startswith(f"{PREFIX}{self.run_id}-")]
        links = _ip("-o", "link", "show").stdout
        return mine + ([self._uplink] if re.search(rf"\b{self._uplink}\b", links) else [])

    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------

    def cut(self, host: str) -> None:
        """Pull `host`'s cable: its bridge port goes down, nothing reaches it or leaves it."""
        _ip("-n", self._switch, "link", "set", self._port(host), "down")

    def restore(self, host: str) -> None:
        """Plug `host`'s cable back in."""
        _ip("-n", self._switch, "link", "set", self._port(host), "up")

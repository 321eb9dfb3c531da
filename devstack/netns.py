"""Several "hosts" on one machine: Linux network namespaces joined by a bridge (needs root).

Each host is a namespace with its own loopback and one veth whose other end
sits on a bridge in the root namespace, with its own address on a private
/24. A process started inside a host (`Host.prefix`) reaches the others only
through the bridge, as it would over a LAN: nothing between an API and a
worker can go through loopback. The test process stays in the root
namespace and reaches every host through the bridge's own address.

Faults: `kill_all` SIGKILLs every process in a host (a host that died);
`cut`/`mend` take its link down and up (a network partition).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass, field

__all__ = ["Host", "Network"]


def _ip(*args: str, check: bool = True) -> str:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True).stdout


@dataclass
class Host:
    name: str
    address: str
    #: The root namespace's end of this host's veth (on the bridge); cutting it cuts the host off.
    link: str

    @property
    def prefix(self) -> list[str]:
        """Prepended to a command line, runs it inside this host."""
        return ["ip", "netns", "exec", self.name]

    def pids(self) -> list[int]:
        return [int(pid) for pid in _ip("netns", "pids", self.name, check=False).split()]

    def kill_all(self) -> int:
        """SIGKILL every process in this host; how many there were."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def mend(self) -> None:
        _ip("link", "set", self.link, "up")


@dataclass
class Network:
    """A bridge and the hosts on it: `10.<a>.<b>.<n>/24`, the bridge itself `.254`."""

    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000}")
    subnet: str = field(default_factory=lambda: f"10.{77 + os.getpid() % 100}.{os.getpid() % 250}")
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"iqbr{self.tag}"

    @property
    def gateway(self) -> str:
        return f"{self.subnet}.254"

    def start(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        """A new host with the next free address."""
        index = len(self.hosts) + 1
        namespace, outside, inside = f"iq{self.tag}-{name}", f"iq{self.tag}o{index}", f"iq{self.tag}i{index}"
        host = Host(namespace, f"{self.subnet}.{index}", outside)
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        inner = ["netns", "exec", namespace, "ip"]
        _ip(*inner, "addr", "add", f"{host.address}/24", "dev", inside)
        _ip(*inner, "link", "set", inside, "up")
        _ip(*inner, "link", "set", "lo", "up")
        self.hosts[name] = host
        return host

    def stop(self) -> None:
        """Kill everything left in the hosts and remove them and the bridge."""
        for host in self.hosts.values():
            host.kill_all()
            _ip("netns", "del", host.name, check=False)
            _ip("link", "del", host.link, check=False)
        _ip("link", "del", self.bridge, check=False)


def available() -> bool:
    """Root, and `ip netns` works here."""
    if os.geteuid() != 0:
        return False
    try:
        _ip("netns", "list")
    except (OSError, subprocess.CalledProcessError):
        return False
    return True

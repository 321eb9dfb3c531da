"""A Redis Sentinel group on loopback: one master, one replica, and one or three Sentinels.

Debian's `redis-sentinel` package is only a configuration and a service around
the same binary: `redis-server <file> --sentinel` runs a Sentinel, so nothing
beyond `redis-server` is needed. Each node is a `RedisServer` (config/redis.conf,
so the replica is as durable as the master); the Sentinels declare the master
down after `DOWN_AFTER_MS` and promote the replica.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from pathlib import Path

import redis

from devstack.processes import REPO, RedisServer, free_port, wait_until

__all__ = ["MASTER_NAME", "SentinelGroup"]

MASTER_NAME = "inferq"
#: How long a master may not answer before the Sentinels call it down (then a failover follows).
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 10_000


class SentinelGroup:
    def __init__(self, directory: Path, sentinels: int = 1) -> None:
        self.dir = directory
        # Each node its own copy of config/redis.conf: a failover rewrites the promoted node's file.
        self.master = RedisServer(directory / "master", config=_config_copy(directory, "master"))
        follow = ["--replicaof", "127.0.0.1", str(self.master.port)]
        self.replica = RedisServer(directory / "replica", extra_args=follow, config=_config_copy(directory, "replica"))
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.quorum = sentinels // 2 + 1
        self.sentinels: list[subprocess.Popen] = []

    @property
    def url(self) -> str:
        """What inferq's processes are given: every Sentinel, the master's name, database 0."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"sentinel://{hosts}/{MASTER_NAME}/0"

    def start(self) -> SentinelGroup:
        self.master.start()
        self.replica.start()
        wait_until(lambda: self._linked(self.replica), 30, "the replica to sync with the master")
        binary = shutil.which("redis-server")
        for index, port in enumerate(self.sentinel_ports):
            conf = self.dir / f"sentinel-{index}.conf"  # Sentinels rewrite their file: each its own
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {self.quorum}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        for port in self.sentinel_ports:
            wait_until(lambda port=port: self._knows_replica(port), 30, f"Sentinel {port} to see the replica")
        return self

    def master_port(self) -> int:
        """The master the Sentinels name now."""
        _host, port = self._sentinel(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def node(self, port: int) -> RedisServer:
        return self.master if port == self.master.port else self.replica

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (no shutdown, no last AOF flush beyond what fsync already wrote)."""
        node = self.node(self.master_port())
        node.stop(signal.SIGKILL)
        return node

    def wait_failover(self, old_port: int, timeout: float = 60) -> int:
        """The new master's port once the Sentinels promoted one and it accepts writes."""

        def promoted() -> int | None:
            port = self.master_port()
            if port == old_port:
                return None
            role = redis.Redis(port=port).execute_command("ROLE")[0]
            return port if role == b"master" else None

        return wait_until(promoted, timeout, "a Sentinel failover")

    def stop(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.terminate()
                process.wait(15)
        for node in (self.replica, self.master):
            node.stop()

    @staticmethod
    def _linked(node: RedisServer) -> bool:
        return node.client().info("replication").get("master_link_status") == "up"

    def _knows_replica(self, port: int) -> bool:
        replicas = self._sentinel(port).sentinel_slaves(MASTER_NAME)
        return any(r.get("is_slave") or r.get("flags", "").startswith("slave") for r in replicas)

    @staticmethod
    def _sentinel(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, decode_responses=True)


def _config_copy(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    copy = directory / f"{name}.conf"
    shutil.copyfile(REPO / "config" / "redis.conf", copy)
    return copy

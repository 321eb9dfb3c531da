"""Several hosts on one machine (Linux network namespaces, devstack.netns): Redis, two APIs, three workers.

Each host reaches the others only through a bridge, over its own address:
no loopback between an API and a worker, no shared files (each host gets its
own copy of the models file and its own files directory; the prepared model
weights are read from the one cache only because re-preparing them per host
would cost minutes and prove nothing). Needs root (`ip netns add`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pytest

from devstack.netns import Host, Network, available
from tests.harness import CHAT_MODEL, EMBED_MODEL, ApiServer, RedisServer, ServiceEnv, WorkerProcess, write_models_file

PASSWORD = "cluster-" + "0123456789abcdef" * 2
METRICS_TOKEN = "cluster-metrics-token"
#: Quick recovery, so a dead host's jobs come back within seconds, not half a minute.
FAST = {
    "INFERQ_LEASE_TIMEOUT_SECONDS": "6",
    "INFERQ_RECONCILE_SECONDS": "1",
    "INFERQ_ORPHAN_SWEEP_SECONDS": "10",
    "INFERQ_METRICS_TOKEN": METRICS_TOKEN,
    "INFERQ_WORKER_WAIT_SECONDS": "30",
}
#: host -> the model its worker serves; two hosts serve the chat model.
WORKER_HOSTS = {"w1": CHAT_MODEL, "w2": CHAT_MODEL, "w3": EMBED_MODEL}


@dataclass
class Cluster:
    network: Network
    redis: RedisServer
    apis: list[ApiServer]
    workers: dict[str, WorkerProcess]

    def host(self, name: str) -> Host:
        return self.network.hosts[name]


def env_for(cluster_dir, name: str, redis: RedisServer) -> ServiceEnv:
    """One host's environment: its own models file and files directory, Redis by its address."""
    directory = cluster_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    return ServiceEnv(redis.url, write_models_file(directory), INFERQ_FILES_DIR=str(directory / "files"), **FAST)


def start_worker(cluster_dir, network: Network, name: str, redis: RedisServer, wait: bool = True) -> WorkerProcess:
    host = network.hosts[name]
    process = WorkerProcess(
        env_for(cluster_dir, name, redis),
        model=WORKER_HOSTS[name],
        log_name=f"cluster-worker-{name}.log",
        extra_args=["--name", f"{WORKER_HOSTS[name]}@{name}", "--concurrency", "8"],
        prefix=host.prefix,
    )
    return process.start(wait=wait)


@pytest.fixture(scope="module")
def cluster(session_dir):
    if not available():
        pytest.skip("network namespaces need root and iproute2 (`ip netns add`)")
    cluster_dir = session_dir / "cluster"
    network = Network().start()
    try:
        for name in ("redis", "api1", "api2", *WORKER_HOSTS):
            network.add(name)
        redis_host = network.hosts["redis"]
        redis = RedisServer(cluster_dir / "redis", password=PASSWORD, host=redis_host.address, prefix=redis_host.prefix)
        redis.start()
        workers = {name: start_worker(cluster_dir, network, name, redis, wait=False) for name in WORKER_HOSTS}
        apis = []
        for name in ("api1", "api2"):
            host = network.hosts[name]
            api = ApiServer(
                env_for(cluster_dir, name, redis),
                workers=1,
                log_name=f"cluster-{name}.log",
                host=host.address,
                prefix=host.prefix,
            )
            apis.append(api.start())
        for process in workers.values():
            process.wait_live()
        yield Cluster(network, redis, apis, workers)
    finally:
        network.stop()
        shutil.rmtree(cluster_dir / "redis", ignore_errors=True)

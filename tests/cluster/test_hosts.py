"""Many hosts on one broker: routing through either API, spread across a model's workers, host faults.

The hosts (tests/cluster/conftest.py): Redis; api1 and api2; w1 and w2 serving
the chat model, w3 the embedding model. Phases, in order: every request
through either API reaches a worker of its model; queued chat jobs spread
over w1 and w2; w1's host dies (SIGKILL of every process in it) mid-load and
no job is lost; w1 comes back and rejoins; w2's link is cut mid-load and no
job is lost; the link mends and w2 rejoins. Prints the jobs each worker ran
and the fault table (accepted / completed / lost / duplicated).
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from dataclasses import dataclass

import redis as redis_py
import requests

from app.metrics import scrape_values
from tasks.heartbeat import live_workers
from tasks.keyspace import KEYS
from tests.cluster.conftest import METRICS_TOKEN, WORKER_HOSTS, start_worker
from tests.harness import CHAT_MODEL, EMBED_MODEL, wait_until


@dataclass
class Phase:
    fault: str
    accepted: list[str]
    ended: dict[str, int]  # job id -> end events

    @property
    def completed(self) -> int:
        return sum(1 for n in self.ended.values() if n >= 1)

    @property
    def lost(self) -> int:
        return len(self.accepted) - self.completed

    @property
    def duplicated(self) -> int:
        return sum(1 for n in self.ended.values() if n > 1)


class Ops:
    """The test's view of the cluster, from the root namespace (through the bridge)."""

    def __init__(self, cluster, key: str) -> None:
        self.cluster = cluster
        self.redis: redis_py.Redis = cluster.redis.client()
        self.headers = {"Authorization": f"Bearer {key}"}
        self._apis = itertools.cycle(cluster.apis)

    def api(self) -> str:
        return next(self._apis).url

    def submit(self, count: int, tokens: int) -> list[str]:
        body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Count."}], "max_tokens": tokens}
        ids = []
        for _ in range(count):
            reply = requests.post(
                self.api() + "/queue/chat/completions",
                json={**body, "ignore_eos": True},
                headers=self.headers,
                timeout=30,
            )
            assert reply.status_code == 202, reply.text
            ids.append(reply.json()["id"])
        return ids

    def statuses(self, ids: list[str]) -> list[tuple[bytes | None, bytes | None]]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hmget(KEYS.job(job_id), "status", "worker")
        return pipe.execute()

    def running_on(self, ids: list[str], host: str) -> int:
        return sum(
            1 for status, by in self.statuses(ids) if status == b"in_progress" and by.decode().endswith(f"@{host}")
        )

    def settle(self, fault: str, ids: list[str], timeout: float = 300) -> Phase:
        wait_until(
            lambda: all(s in (b"completed", b"failed") for s, _ in self.statuses(ids)), timeout, f"{fault}: jobs"
        )
        ended = {
            job_id: sum(1 for _, f in self.redis.xrange(KEYS.events(job_id)) if f[b"type"] == b"end") for job_id in ids
        }
        return Phase(fault, ids, ended)

    def per_worker(self, ids: list[str]) -> Counter:
        return Counter(by.decode() for status, by in self.statuses(ids) if status == b"completed")

    def live(self, model: str) -> int:
        return live_workers(self.redis, model, 15)


def test_many_hosts_one_broker(cluster):
    from app.auth.keys import KeyStore

    key, _ = KeyStore(cluster.redis.client()).create(name="cluster", rpm=1_000_000)
    ops = Ops(cluster, key)
    phases: list[Phase] = []
    every: list[str] = []

    # Routing: through either API, each model reaches a worker of its own.
    for api in cluster.apis:
        chat = requests.post(
            api.url + "/v1/chat/completions",
            headers=ops.headers,
            timeout=120,
            json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4},
        )
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["message"]["content"] is not None
        embedded = requests.post(
            api.url + "/v1/embeddings", headers=ops.headers, timeout=120, json={"model": EMBED_MODEL, "input": "hello"}
        )
        assert embedded.status_code == 200 and len(embedded.json()["data"][0]["embedding"]) == 384
        metrics = requests.get(api.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert scrape_values(metrics.text)[f"inferq_live_workers{{model={CHAT_MODEL}}}"] == 2

    # Spread: one model's jobs go to both of its workers.
    spread = ops.submit(24, tokens=16)
    phases.append(ops.settle("none (spread)", spread))
    assert {f"{CHAT_MODEL}@w1", f"{CHAT_MODEL}@w2"} <= set(ops.per_worker(spread)), ops.per_worker(spread)
    every += spread

    # w1's host dies mid-load.
    load = ops.submit(16, tokens=48)
    wait_until(lambda: ops.running_on(load, "w1") >= 1, 120, "w1 to run some jobs")
    killed = cluster.host("w1").kill_all()
    assert killed >= 2, "the worker and its engine core"
    phases.append(ops.settle("w1 host killed", load))
    every += load

    # w1 comes back and takes jobs again.
    cluster.workers["w1"] = start_worker(cluster.redis.dir.parent, cluster.network, "w1", cluster.redis)
    wait_until(lambda: ops.live(CHAT_MODEL) == 2, 60, "w1 to rejoin")
    rejoined = ops.submit(16, tokens=16)
    phases.append(ops.settle("w1 back", rejoined))
    assert f"{CHAT_MODEL}@w1" in ops.per_worker(rejoined)
    every += rejoined

    # w2's link is cut mid-load, then mended.
    load = ops.submit(16, tokens=48)
    wait_until(lambda: ops.running_on(load, "w2") >= 1, 120, "w2 to run some jobs")
    cluster.host("w2").cut()
    cut_at = time.monotonic()
    phases.append(ops.settle("w2 link cut", load))
    every += load
    cluster.host("w2").mend()
    supervise(cluster, "w2")
    wait_until(
        lambda: supervise(cluster, "w2") and ops.live(CHAT_MODEL) == 2, 240, "w2 to rejoin after its link mended"
    )
    print(f"\nw2 rejoined {time.monotonic() - cut_at:.0f} s after its link was cut")

    report(ops, phases, every)
    for phase in phases:
        assert (phase.lost, phase.duplicated) == (0, 0), phase


def supervise(cluster, name: str) -> bool:
    """Restart a worker that exited (its consumer watch shuts down a consumer that stalled): a supervisor's job."""
    if cluster.workers[name].process.poll() is not None:
        cluster.workers[name] = start_worker(cluster.redis.dir.parent, cluster.network, name, cluster.redis, wait=False)
    return True


def report(ops: Ops, phases: list[Phase], every: list[str]) -> None:
    print("\njobs run, per worker:")
    for worker, count in sorted(ops.per_worker(every).items()):
        print(f"  {worker:<40} {count:>4}")
    print(f"\n{'fault':<16} {'accepted':>9} {'completed':>10} {'lost':>5} {'duplicated':>11}")
    for phase in phases:
        print(
            f"{phase.fault:<16} {len(phase.accepted):>9} {phase.completed:>10} {phase.lost:>5} {phase.duplicated:>11}"
        )
    assert set(WORKER_HOSTS) == {"w1", "w2", "w3"}

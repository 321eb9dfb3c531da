"""A crash anywhere loses no accepted job: a SIGKILLed worker, a dead engine core, a Redis restart.

These tests run their own redis-server and workers (they kill them), with a
short lease timeout so the reconciler notices a dead worker within seconds.
Chaos level: every wait here is on an observed condition and fails loudly at
its deadline.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from tasks.heartbeat import worker_loads
from tasks.jobs import TERMINAL
from tasks.keyspace import KEYS
from tests.harness import CHAT_MODEL, WorkerProcess, wait_until

LEASE = {"INFERQ_LEASE_TIMEOUT_SECONDS": "6", "INFERQ_RECONCILE_SECONDS": "2", "INFERQ_LEASE_RENEW_SECONDS": "1"}


def job_body(i: int, tokens: int = 8) -> dict:
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": f"Count to {i % 10 + 3}."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "seed": i,
    }


@pytest.fixture(scope="module")
def crash_stack(private_stack):
    stack = private_stack("crash", **LEASE)
    app, redis_server, env = stack.app, stack.redis, stack.env
    workers: list[WorkerProcess] = []

    def start_worker(name: str, alone: bool = False) -> WorkerProcess:
        if alone:  # two cores: never keep more engines than a test needs
            for old in workers:
                old.stop()
        worker = WorkerProcess(env, log_name=f"crash-{name}.log").start()
        workers.append(worker)
        return worker

    yield app, redis_server, start_worker
    for worker in workers:
        worker.kill()


def submit_all(client, count: int, tokens: int = 8) -> list[str]:
    ids = []
    for i in range(count):
        response = client.post("/queue/chat/completions", json=job_body(i, tokens))
        assert response.status_code == 202, response.get_data(as_text=True)
        ids.append(response.get_json()["id"])
    return ids


def statuses(store, ids):
    pipe = store.redis.pipeline()
    for job_id in ids:
        pipe.hget(KEYS.job(job_id), "status")
    return [s.decode() if s else None for s in pipe.execute()]


def wait_all_terminal(store, ids, timeout):
    current = statuses(store, ids)
    deadline = time.monotonic() + timeout
    while not all(s in TERMINAL for s in current):
        if time.monotonic() > deadline:
            raise AssertionError(f"not all jobs ended: {sum(s not in TERMINAL for s in current)} still open")
        time.sleep(1)
        current = statuses(store, ids)
    return current


def wait_counts(store, ids, timeout, **at_least: int) -> list[str]:
    """Wait until at least so many of the jobs are in each named status; fail loudly otherwise."""

    def reached():
        current = statuses(store, ids)
        return current if all(current.count(status) >= n for status, n in at_least.items()) else None

    return wait_until(reached, timeout, f"jobs to reach {at_least}", interval=0.1)


def engine_requests(redis_client, worker: WorkerProcess) -> int:
    """Requests inside this worker's engine, as its heartbeat last reported (dead workers' entries ignored)."""
    loads = worker_loads(redis_client, CHAT_MODEL)
    return sum(load["requests"] for name, load in loads.items() if name.endswith(f"-{worker.process.pid}"))


def broker_losses(worker: WorkerProcess) -> int:
    """How often the worker's Celery consumer has reported losing the broker (its log is append-only)."""
    return worker.log_path.read_text(errors="replace").count("Connection to broker lost")


def assert_exactly_one_result_each(store, ids):
    for job_id in ids:
        record = store.get(job_id)
        assert record.status == "completed", record
        assert record.result["usage"]["completion_tokens"] == record.request.sampling.max_tokens
        ends = [e for _, e in store.redis.xrange(KEYS.events(job_id)) if e[b"type"] == b"end"]
        assert len(ends) == 1, f"{job_id} ended {len(ends)} times"


def test_500_jobs_survive_a_sigkilled_worker(crash_stack):
    app, _redis, start_worker = crash_stack
    store = app.extensions["inferq.jobs"]
    first = start_worker("first", alone=True)
    ids = submit_all(app.test_client(), 500)
    wait_counts(store, ids, 300, completed=20, in_progress=10)
    first.kill(signal.SIGKILL)
    at_kill = statuses(store, ids)
    assert at_kill.count("in_progress") >= 10, "the kill should catch jobs mid-run"
    start_worker("second")
    final = wait_all_terminal(store, ids, timeout=600)
    assert final == ["completed"] * 500
    assert_exactly_one_result_each(store, ids)
    rerun = [job_id for job_id in ids if store.get(job_id).attempts > 1]
    assert rerun, "the jobs the dead worker held should have been re-queued and run again"


def test_a_dead_engine_core_is_restarted_and_its_jobs_finish(crash_stack):
    app, redis_server, start_worker = crash_stack
    store = app.extensions["inferq.jobs"]
    worker = start_worker("engine", alone=True)
    ids = submit_all(app.test_client(), 64, tokens=48)
    wait_counts(store, ids, 120, in_progress=8)
    # Kill the core while it holds requests mid-generation, as its worker's heartbeat reports them.
    wait_until(lambda: engine_requests(redis_server.client(), worker) >= 8, 30, "the engine to hold 8 requests")
    cores = [
        p
        for p in psutil.Process(worker.process.pid).children(recursive=True)
        if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()
    ]
    assert cores, "no engine core process found"
    for core in cores:
        core.kill()
    final = wait_all_terminal(store, ids, timeout=600)
    assert final == ["completed"] * 64
    assert_exactly_one_result_each(store, ids)
    loads = worker_loads(redis_server.client(), CHAT_MODEL)
    assert any(load["restarts"] >= 1 for load in loads.values())


def test_jobs_survive_a_redis_restart(crash_stack):
    app, redis_server, start_worker = crash_stack
    store = app.extensions["inferq.jobs"]
    worker = start_worker("redis", alone=True)
    ids = submit_all(app.test_client(), 100, tokens=16)
    wait_counts(store, ids, 120, in_progress=8)
    lost_before = broker_losses(worker)
    redis_server.stop()  # SIGTERM: Redis writes its append-only file and exits
    # Keep Redis down until the worker has really lost it (not for a guessed number of seconds).
    wait_until(lambda: broker_losses(worker) > lost_before, 60, "the worker to notice Redis is gone", interval=0.1)
    redis_server.start()
    final = wait_all_terminal(store, ids, timeout=600)
    assert final == ["completed"] * 100
    assert_exactly_one_result_each(store, ids)

"""A real worker and a real API SIGTERMed under load (the main process only, as a container runtime does).

A second worker beside the session's runs long jobs with a short drain
bound: every job ends exactly once, the ones it finishes within its bound
finish there, and the rest are queued again at once and run on the other.
Then a gunicorn SIGTERMed with a response open stops accepting and still
finishes that response.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tasks.jobs import JobService
from tasks.keyspace import KEYS
from tasks.redis_client import redis_client
from tests.harness import CHAT_MODEL, ApiServer, ServiceEnv, WorkerProcess, wait_until

#: The SIGTERMed worker's bound, short so the test is; its jobs are long enough to outlive it.
DRAIN_SECONDS = 4.0
#: The issue's promise: a drained worker's jobs are queued again within this after its bound.
HAND_BACK_WITHIN = 2.0


def long_job(tokens: int) -> dict:
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": tokens,
        "ignore_eos": True,
    }


@pytest.fixture()
def draining_worker(service_env, worker):
    """A second worker of the chat model (the session's takes what it gives back), four slots."""
    env = ServiceEnv(
        service_env.vars["INFERQ_REDIS_URL"],
        service_env.vars["INFERQ_MODELS_FILE"],
        INFERQ_DRAIN_SECONDS=str(DRAIN_SECONDS),
        INFERQ_FILES_DIR=service_env.vars["INFERQ_FILES_DIR"],
    )
    process = WorkerProcess(env, log_name="worker-drain.log", extra_args=["--concurrency", "4"]).start()
    yield process
    process.kill()


def test_a_sigtermed_worker_finishes_or_hands_back_every_job_at_once(client, draining_worker, worker):
    redis = client.application.extensions["inferq.jobs"].redis
    name_suffix = f"-{draining_worker.process.pid}"
    bodies = [long_job(8) for _ in range(4)] + [long_job(240) for _ in range(12)]
    ids = [client.post("/queue/chat/completions", json=body).get_json()["id"] for body in bodies]

    def on_draining() -> list[str]:
        records = [redis.hmget(KEYS.job(i), "status", "worker") for i in ids]
        return [
            i
            for i, (status, by) in zip(ids, records, strict=True)
            if status == b"in_progress" and by.decode().endswith(name_suffix)
        ]

    held = wait_until(lambda: len(on_draining()) >= 2 and on_draining(), 120, "the worker to run some jobs")
    os.kill(draining_worker.process.pid, signal.SIGTERM)  # its main process only, as a container runtime does
    terminated = time.monotonic()
    left = watch_hand_backs(redis, held, name_suffix, timeout=DRAIN_SECONDS + 30)
    assert draining_worker.process.wait(DRAIN_SECONDS + 60) == 0, "a warm, clean exit"
    exited = time.monotonic() - terminated

    records = finished(client, ids)
    assert all(r["status"] == "completed" for r in records.values()), records
    for job_id in ids:
        assert len([f for _, f in redis.xrange(KEYS.events(job_id)) if f[b"type"] == b"end"]) == 1, job_id
    handed = [i for i in held if redis.hget(KEYS.job(i), "handbacks")]
    assert handed, "some of its long jobs outlived the bound"
    for job_id in handed:
        assert not redis.hget(KEYS.job(job_id), "worker").decode().endswith(name_suffix), "it ran elsewhere"
    delays = [left[i] - DRAIN_SECONDS for i in handed]
    print(
        f"\ndrain: SIGTERM with {len(held)} job(s) running on the worker (bound {DRAIN_SECONDS:g} s); "
        f"{len(held) - len(handed)} finished there, {len(handed)} handed back; queued again "
        f"{max(delays):.2f} s after the bound at most (mean {sum(delays) / len(delays):.2f} s); "
        f"the worker exited {exited:.1f} s after SIGTERM"
    )
    assert max(delays) < HAND_BACK_WITHIN


def watch_hand_backs(redis, held: list[str], name_suffix: str, timeout: float) -> dict[str, float]:
    """Seconds after SIGTERM at which each job stopped being in progress on the draining worker."""
    started, left = time.monotonic(), {}
    while len(left) < len(held) and time.monotonic() - started < timeout:
        for job_id in held:
            status, by = redis.hmget(KEYS.job(job_id), "status", "worker")
            if job_id not in left and not (status == b"in_progress" and by.decode().endswith(name_suffix)):
                left[job_id] = time.monotonic() - started
        time.sleep(0.02)
    assert len(left) == len(held), "every job it ran left it"
    return left


def finished(client, ids: list[str]) -> dict[str, dict]:
    records = {}
    for job_id in ids:
        reply = wait_until(
            lambda job_id=job_id: (
                (r := client.get(f"/queue/jobs/{job_id}?wait=30").get_json())["status"] not in ("queued", "in_progress")
                and r
            ),
            300,
            f"job {job_id} to end",
        )
        records[job_id] = reply
    return records


def test_a_sigtermed_api_stops_accepting_and_finishes_its_open_responses(service_env, worker, api_key):
    api = ApiServer(service_env, workers=1, log_name="api-drain.log").start()
    store = JobService(redis_client(service_env.vars["INFERQ_REDIS_URL"]))
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 120,
        "ignore_eos": True,
        "temperature": 0,
    }
    with ThreadPoolExecutor(1) as pool:
        try:
            url = api.url + "/v1/chat/completions"
            pending = pool.submit(requests.post, url, json=body, headers=headers, timeout=300)
            wait_until(lambda: store.running_per_model().get(CHAT_MODEL, 0) >= 1, 60, "the request to run")
            os.kill(api.process.pid, signal.SIGTERM)  # gunicorn's master, as a container runtime does
            terminated = time.monotonic()
            wait_until(lambda: refused(api.url), 10, "the API to stop accepting")
            reply = pending.result(timeout=120)
            answered = time.monotonic() - terminated
            assert reply.status_code == 200, reply.text
            assert reply.json()["usage"]["completion_tokens"] == 120, "the whole answer, not a cut one"
            assert api.process.wait(30) == 0
        finally:
            api.stop()
    print(f"\napi drain: an open response finished {answered:.1f} s after SIGTERM; new connections were refused")


def refused(url: str) -> bool:
    try:
        requests.get(url + "/health", timeout=2)
    except requests.ConnectionError:
        return True
    return False

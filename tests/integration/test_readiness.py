"""Readiness follows the workers: a model is ready while a live worker consumes its queue.

Runs its own redis-server and worker (it stops both), like test_crash.
"""

from __future__ import annotations

import pytest

from tests.harness import CHAT_MODEL, GHOST_MODEL, WorkerProcess, wait_until


@pytest.fixture(scope="module")
def ready_stack(private_stack):
    stack = private_stack("readiness")
    worker = WorkerProcess(stack.env, log_name="readiness-worker.log")
    yield stack.app, stack.redis, worker
    worker.kill()


def available(client, model: str) -> bool | None:
    return next(m["available"] for m in client.get("/v1/models").get_json()["data"] if m["id"] == model)


@pytest.mark.engine
def test_ready_follows_the_worker_and_redis(ready_stack):
    app, redis_server, worker = ready_stack
    client = app.test_client()

    before = client.get("/health/ready", headers={"Authorization": ""})  # public: no key needed
    assert before.status_code == 200
    assert before.get_json()["models"][CHAT_MODEL] == {"live_workers": 0, "ready": False}
    assert before.get_json()["status"] == "degraded"

    worker.start()
    body = client.get("/health/ready").get_json()
    assert body["redis"] is True
    assert body["models"][CHAT_MODEL] == {"live_workers": 1, "ready": True}
    assert body["models"][GHOST_MODEL] == {"live_workers": 0, "ready": False}  # configured, never served
    assert available(client, CHAT_MODEL) is True
    assert available(client, GHOST_MODEL) is False

    worker.stop()  # a clean stop removes the heartbeat at once
    wait_until(lambda: not client.get("/health/ready").get_json()["models"][CHAT_MODEL]["ready"], 20, "not ready")
    after = client.get("/health/ready")
    assert after.status_code == 200  # Redis answers: the instance stays in rotation, the model is marked
    assert after.get_json()["models"][CHAT_MODEL] == {"live_workers": 0, "ready": False}
    assert available(client, CHAT_MODEL) is False
    refused = client.post(
        "/v1/chat/completions", json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert refused.status_code == 503

    redis_server.stop()
    down = client.get("/health/ready")
    assert down.status_code == 503
    assert down.get_json()["status"] == "unavailable"
    assert client.get("/health", headers={"Authorization": ""}).status_code == 200  # alive, just not ready

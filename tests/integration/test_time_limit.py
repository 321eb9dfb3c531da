"""A generation past its model's `time_limit_seconds` is stopped, failed with a 504 and billed for what ran.

The worker here serves a copy of the chat model whose limit is a few
seconds, so one long request reaches it while short ones never do; the same
worker must then serve the next request as if nothing happened.
"""

from __future__ import annotations

import pytest
import yaml

from app.auth.keys import KeyStore
from tests.harness import CHAT_MODEL, ServiceEnv, WorkerProcess, write_models_file

pytestmark = pytest.mark.engine

LIMITED = "smollm2-135m-time-limited"
LIMIT_SECONDS = 5


@pytest.fixture(scope="module")
def limited_models(session_dir):
    directory = session_dir / "time-limit"
    directory.mkdir()
    path = write_models_file(directory)
    document = yaml.safe_load(path.read_text())
    chat = next(m for m in document["models"] if m["id"] == CHAT_MODEL)
    cpu = {**chat["devices"]["cpu"], "kv_cache_memory_bytes": 256 << 20}  # a third engine beside the suite's two
    limited = {**chat, "id": LIMITED, "time_limit_seconds": LIMIT_SECONDS, "devices": {**chat["devices"], "cpu": cpu}}
    document["models"].append(limited)
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture(scope="module")
def limited_worker(redis_server, limited_models):
    process = WorkerProcess(ServiceEnv(redis_server.url, limited_models), model=LIMITED).start()
    yield process
    process.stop()


def test_a_generation_past_the_time_limit_fails_with_504_and_is_billed(
    make_app, redis_server, limited_models, limited_worker
):
    key, _ = KeyStore(redis_server.client()).create(name="time-limit", rpm=1000)
    client = make_app(models_file=str(limited_models)).test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    long = {
        "model": LIMITED,
        "messages": [{"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 1900,
        "ignore_eos": True,
    }
    response = client.post("/v1/chat/completions", json=long)
    assert response.status_code == 504, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["code"] == "time_limit_exceeded" and f"limit of {LIMIT_SECONDS} s" in error["message"]
    [billed] = client.get("/v1/usage").get_json()["data"]
    ran = billed["completion_tokens"]
    assert billed["requests"] == 1 and 0 < ran < long["max_tokens"], "billed for what it generated before the stop"

    short = client.post("/v1/chat/completions", json={**long, "max_tokens": 4})
    assert short.status_code == 200, "the same worker serves the next job"
    [billed] = client.get("/v1/usage").get_json()["data"]
    assert billed["requests"] == 2 and billed["completion_tokens"] == ran + 4

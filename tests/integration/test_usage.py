"""Usage: what `GET /v1/usage` bills equals the `usage` the client was handed, per key."""

import datetime as dt
import json
import time

import pytest

from app.auth.keys import KeyStore
from tasks.keyspace import KEYS
from tests.harness import CHAT_MODEL, GHOST_MODEL, wait_until

pytestmark = pytest.mark.engine

MESSAGES = [{"role": "user", "content": "Name a colour."}]


def keyed(make_app, key):
    client = make_app().test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


@pytest.fixture()
def new_key(redis_server):
    def make(**limits):
        return KeyStore(redis_server.client()).create(name="usage", **{"rpm": 1000, **limits})[0]

    return make


def stream_usage(response) -> dict:
    assert response.status_code == 200, response.get_data(as_text=True)
    chunks = [
        json.loads(line[len("data: ") :])
        for line in response.get_data(as_text=True).splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]
    return chunks[-1]["usage"]


def queued_usage(client, body) -> dict:
    submitted = client.post("/queue/chat/completions", json=body)
    assert submitted.status_code == 202, submitted.get_data(as_text=True)
    job_id = submitted.get_json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/queue/jobs/{job_id}?wait=10").get_json()
        if job["status"] == "completed":
            return job["result"]["usage"]
        assert job["status"] in ("queued", "in_progress"), job
    raise TimeoutError(job_id)


def test_usage_totals_equal_what_the_client_received(make_app, worker, new_key):
    client = keyed(make_app, new_key())
    received = []
    chat = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 8}
    received.append(client.post("/v1/chat/completions", json=chat).get_json()["usage"])
    completion = {"model": CHAT_MODEL, "prompt": ["One,", "Two, three,"], "max_tokens": 5}
    received.append(client.post("/v1/completions", json=completion).get_json()["usage"])
    streamed = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    received.append(stream_usage(client.post("/v1/chat/completions", json=streamed)))
    received.append(queued_usage(client, chat))
    # A job cancelled before it started generated nothing and is not billed.
    never_ran = client.post("/queue/chat/completions", json={**chat, "model": GHOST_MODEL}).get_json()["id"]
    assert client.delete(f"/queue/jobs/{never_ran}").get_json()["status"] == "cancelled"

    prompt = sum(u["prompt_tokens"] for u in received)
    completion_tokens = sum(u["completion_tokens"] for u in received)
    report = client.get("/v1/usage").get_json()
    assert report["object"] == "usage" and report["currency"] == "usd"
    [entry] = report["data"]
    assert entry["model"] == CHAT_MODEL and entry["requests"] == len(received)
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (prompt, completion_tokens)
    assert entry["total_tokens"] == prompt + completion_tokens
    # Prices from config/models.yaml: USD per million tokens.
    assert entry["cost"]["prompt"] == pytest.approx(prompt * 0.05 / 1e6)
    assert entry["cost"]["completion"] == pytest.approx(completion_tokens * 0.10 / 1e6)
    assert entry["cost"]["total"] == pytest.approx(entry["cost"]["prompt"] + entry["cost"]["completion"])
    total = report["total"]
    assert (total["prompt_tokens"], total["completion_tokens"], total["requests"]) == (
        prompt,
        completion_tokens,
        len(received),
    )
    assert total["cost"]["total"] == pytest.approx(entry["cost"]["total"])

    today = dt.datetime.now(dt.timezone.utc).date()
    same = client.get(f"/v1/usage?start={today}&end={today}").get_json()
    assert same["data"] == report["data"]
    tomorrow = today + dt.timedelta(days=1)
    later = client.get(f"/v1/usage?start={tomorrow}&end={tomorrow}").get_json()
    assert later["data"] == [] and later["total"]["total_tokens"] == 0


def test_usage_is_per_key(make_app, worker, new_key):
    client = keyed(make_app, new_key())
    assert client.get("/v1/usage").get_json()["data"] == []  # the other tests' tokens are not ours


def test_bad_range_is_400(make_app, redis_server, new_key):
    client = keyed(make_app, new_key())
    response = client.get("/v1/usage?start=2025-02-01&end=2025-01-01")
    assert response.status_code == 400 and response.get_json()["error"]["param"] == "start"
    assert client.get("/v1/usage?start=yesterday").status_code == 400
    assert client.get("/v1/usage?start=2020-01-01&end=2025-01-01").status_code == 400


def test_cancelled_job_is_billed_for_what_it_generated(make_app, worker, new_key):
    client = keyed(make_app, new_key())
    # Streamed, so that the tokens generated before the cancel can be seen arriving (and waited for).
    body = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 1500, "ignore_eos": True, "stream": True}
    job_id = client.post("/queue/chat/completions", json=body).get_json()["id"]
    wait_until(
        lambda: client.get(f"/queue/jobs/{job_id}").get_json()["status"] == "in_progress", 60, "the job to start"
    )
    redis = client.application.extensions["inferq.jobs"].redis
    wait_until(lambda: redis.xlen(KEYS.events(job_id)) >= 5, 60, "the first generated tokens", interval=0.05)
    assert client.delete(f"/queue/jobs/{job_id}").status_code == 200

    def billed():
        job = client.get(f"/queue/jobs/{job_id}").get_json()
        return job if job["usage"] is not None else None

    job = wait_until(billed, 60, "the cancelled job's usage")
    assert job["status"] == "cancelled" and 0 < job["usage"]["completion_tokens"] < 1500
    assert job["usage"]["completion_tokens"] >= 5  # at least the tokens seen before the cancel
    [entry] = client.get("/v1/usage").get_json()["data"]
    assert entry["completion_tokens"] == job["usage"]["completion_tokens"]
    assert entry["prompt_tokens"] == job["usage"]["prompt_tokens"]


def test_tokens_per_minute_limit(make_app, worker, new_key):
    client = keyed(make_app, new_key(tpm=10))
    chat = {"model": CHAT_MODEL, "messages": MESSAGES, "max_tokens": 8}
    first = client.post("/v1/chat/completions", json=chat)
    assert first.status_code == 200 and first.get_json()["usage"]["total_tokens"] > 10
    refused = client.post("/v1/chat/completions", json=chat)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limit_exceeded"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit-Tokens"] == "10"
    assert client.get("/v1/usage").status_code == 200  # reading is not spending

"""Synchronous callers through the real worker: what a timeout, a cap and a delivered answer leave behind.

A caller that gives up cancels its job (no engine slot held, nothing billed
past what ran); a key's open connections are capped with a 429 in OpenAI's
shape; a delivered answer is trimmed from Redis to what billing keeps.
"""

from __future__ import annotations

import threading

from tasks.jobs.policy import STREAM_GRACE_SECONDS
from tasks.keyspace import KEYS
from tests.harness import CHAT_MODEL, wait_until


def chat(tokens: int, content: str = "Tell me a long story.") -> dict:
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "seed": 3,
    }


def jobs_of(app):
    return app.extensions["inferq.jobs"]


def newest_job(store, owner_before: set[bytes]) -> str:
    """The job this test just created: the one record that was not there before."""
    created = set(store.redis.scan_iter(match=KEYS.job("*"), count=1000)) - owner_before
    ids = [key.decode().rsplit(":", 1)[1] for key in created if not key.endswith(b":events")]
    assert len(ids) == 1, ids
    return ids[0]


def test_a_synchronous_timeout_cancels_its_job_and_frees_its_slot(make_app, worker):
    app = make_app(sync_timeout_seconds=1.0)
    store = jobs_of(app)
    before = set(store.redis.scan_iter(match=KEYS.job("*"), count=1000))
    response = app.test_client().post("/v1/chat/completions", json=chat(1500))
    assert response.status_code == 504, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "timeout"
    job = store.get(newest_job(store, before))

    def ended():
        record = store.get(job.id)
        return record if record.status == "cancelled" and record.usage else None

    ended = wait_until(ended, 60, "the cancelled job's end, with its usage")
    assert ended.usage["completion_tokens"] < 1500, "it stopped generating when its caller left"
    assert store.redis.zscore(KEYS.waiting(job.owner), job.id) is None


def test_a_delivered_answer_is_trimmed_to_what_billing_keeps(make_app, worker):
    app = make_app()
    store = jobs_of(app)
    before = set(store.redis.scan_iter(match=KEYS.job("*"), count=1000))
    response = app.test_client().post("/v1/chat/completions", json=chat(4, "Say hi."))
    assert response.status_code == 200
    job = store.get(newest_job(store, before))
    assert job.status == "completed" and job.result is None and job.request is None, "the answer rode its end event"
    assert store.redis.zscore(KEYS.waiting(job.owner), job.id) is None, "its wait slot is free"
    assert job.usage == response.get_json()["usage"], "the record still says what was billed"
    assert 0 < store.redis.ttl(KEYS.events(job.id)) <= STREAM_GRACE_SECONDS, "nobody streamed it: its event goes soon"
    gone = app.test_client().get(f"/queue/jobs/{job.id}/stream")
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "stream_expired"
    assert app.test_client().get(f"/queue/jobs/{job.id}").get_json()["usage"] == job.usage


def test_a_key_over_its_waiting_cap_gets_a_429_in_openais_shape(make_app, worker):
    from app.auth.keys import KeyStore

    app = make_app(max_waiting_per_key=1)
    store = jobs_of(app)
    key, record = KeyStore(store.redis).create(name="one-at-a-time", rpm=1_000_000)
    auth = {"Authorization": f"Bearer {key}"}
    answers = []
    slow = threading.Thread(
        target=lambda: answers.append(app.test_client().post("/v1/chat/completions", json=chat(200), headers=auth))
    )
    slow.start()
    try:
        waiting = KEYS.waiting(record["id"])
        wait_until(lambda: store.redis.zcard(waiting) == 1, 30, "the first request to hold its slot")
        refused = app.test_client().post("/v1/chat/completions", json=chat(2, "Hi"), headers=auth)
        assert refused.status_code == 429, refused.get_data(as_text=True)
        error = refused.get_json()["error"]
        assert error["code"] == "too_many_concurrent_requests" and int(refused.headers["Retry-After"]) >= 1
        assert app.test_client().post("/v1/chat/completions", json=chat(2, "Hi")).status_code == 200, "other keys"
    finally:
        slow.join(120)
    assert answers[0].status_code == 200
    assert app.test_client().post("/v1/chat/completions", json=chat(2, "Hi"), headers=auth).status_code == 200


def test_a_reader_that_resumed_a_synchronous_stream_gets_its_usage_after_delivery(make_app, worker):
    """The synchronous stream collects (trims) the job while a resumed reader is still behind it.

    The resumed reader already has every delta; what it still owes its client
    is the usage chunk, and the trimmed record keeps the usage. (Each stream
    runs in its own thread, as under gunicorn: Flask's streamed contexts are
    per thread.)
    """
    app = make_app()
    body = {**chat(12), "stream": True, "stream_options": {"include_usage": True}}
    sync = app.test_client().post("/v1/chat/completions", json=body, buffered=False)
    sync_chunks = iter(sync.response)
    first = next(chunk for chunk in sync_chunks if chunk.startswith(b"data: {"))
    opened, delivered, resumed = threading.Event(), threading.Event(), []

    def resume() -> None:
        response = app.test_client().get(f"/queue/jobs/{sync.headers['X-Job-Id']}/stream", buffered=False)
        resumed.append(response.status_code)
        opened.set()
        delivered.wait(120)
        resumed.extend(line for chunk in response.response for line in chunk.split(b"\n"))

    reader = threading.Thread(target=resume)
    reader.start()
    assert opened.wait(60) and resumed[0] == 200, "opened while the job still runs"
    rest = [chunk for chunk in sync_chunks if chunk.startswith(b"data: {")]
    assert jobs_of(app).get(sync.headers["X-Job-Id"]).result is None, "the synchronous stream delivered it"
    delivered.set()
    reader.join(120)
    again = [line for line in resumed[1:] if line.startswith(b"data: {")]
    assert again == [first.rstrip(b"\n"), *(chunk.rstrip(b"\n") for chunk in rest)]
    assert b'"usage":{"prompt_tokens"' in again[-1]

"""Streaming through gunicorn: the openai client, disconnects, resumption."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.harness import CHAT_MODEL

STORY = [{"role": "user", "content": "Tell me a story about a lighthouse keeper."}]


def sse_events(response: httpx.Response):
    """(id, data) pairs of an SSE response, comments skipped."""
    event_id, data = None, None
    for line in response.iter_lines():
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and data is not None:
            yield event_id, data
            event_id, data = None, None


def test_text_completion_stream_matches_non_streamed(openai_client):
    client = openai_client()
    whole = client.completions.create(model=CHAT_MODEL, prompt="Once upon a time", max_tokens=24, seed=9)
    chunks = list(
        client.completions.create(
            model=CHAT_MODEL,
            prompt="Once upon a time",
            max_tokens=24,
            seed=9,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 24
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_n_2_streams_both_choices(openai_client):
    client = openai_client()
    whole = client.chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=16, n=2, seed=5)
    texts = {0: "", 1: ""}
    roles = set()
    for chunk in client.chat.completions.create(
        model=CHAT_MODEL, messages=STORY, max_tokens=16, n=2, seed=5, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.delta.role:
                roles.add(choice.index)
    assert roles == {0, 1}
    assert texts == {c.index: c.message.content for c in whole.choices}


def test_usage_chunk_only_when_asked(openai_client):
    chunks = list(openai_client().chat.completions.create(model=CHAT_MODEL, messages=STORY, max_tokens=4, stream=True))
    assert all(c.usage is None for c in chunks)


def test_disconnect_aborts_the_generation(api_server, api_key, redis_server):
    from tasks.jobs import JobService, Policy

    store = JobService(redis_server.client(), Policy(retention=3600))
    body = {"model": CHAT_MODEL, "messages": STORY, "max_tokens": 1500, "ignore_eos": True, "stream": True}
    headers = {"Authorization": f"Bearer {api_key}"}
    with (
        httpx.Client(base_url=api_server.url, headers=headers, timeout=60) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        job_id = response.headers["X-Job-Id"]
        for received, _ in enumerate(sse_events(response), start=1):
            if received == 5:
                break  # hang up mid-stream
    deadline = time.monotonic() + 30
    record = store.get(job_id)
    while record.usage is None and time.monotonic() < deadline:
        time.sleep(0.2)
        record = store.get(job_id)
    assert record.status == "cancelled", "the engine kept generating for a client that left"
    assert 5 <= record.usage["completion_tokens"] < 1500


def test_queue_stream_resumes_with_last_event_id(api_server, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {"model": CHAT_MODEL, "messages": STORY, "max_tokens": 40, "ignore_eos": True, "seed": 3, "stream": True}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=120) as http:
        job = http.post("/queue/chat/completions", json=body).json()
        url = f"/queue/jobs/{job['id']}/stream"
        first_part = []
        with http.stream("GET", url) as response:
            for event_id, data in sse_events(response):
                first_part.append((event_id, data))
                if len(first_part) == 10:
                    break  # the connection drops
        with http.stream("GET", url, headers={"Last-Event-ID": first_part[-1][0]}) as response:
            rest = list(sse_events(response))
        result = http.get(f"/queue/jobs/{job['id']}", params={"wait": 60}).json()
    assert rest[-1][1] == "[DONE]"
    chunks = [json.loads(data) for _, data in first_part + rest[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == result["result"]["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "role" not in chunks[10]["choices"][0]["delta"]  # the resumed part does not restart the message
    ids = [event_id for event_id, _ in first_part + rest[:-1]]
    assert len(ids) == len(set(ids)), "no event is delivered twice"


def test_queue_stream_of_a_non_streamed_job_gives_the_answer(api_server, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    body = {"model": CHAT_MODEL, "messages": STORY, "max_tokens": 8}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=120) as http:
        job = http.post("/queue/chat/completions", json=body).json()
        with http.stream("GET", f"/queue/jobs/{job['id']}/stream") as response:
            events = [data for _, data in sse_events(response)]
        result = http.get(f"/queue/jobs/{job['id']}").json()
    assert events[-1] == "[DONE]"
    assert (
        json.loads(events[0])["choices"][0]["delta"]["content"] == result["result"]["choices"][0]["message"]["content"]
    )


def test_error_after_the_stream_started_is_one_error_event(api_server, api_key):
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=60) as http:
        job = http.post(
            "/queue/chat/completions",
            json={"model": CHAT_MODEL, "messages": STORY, "max_tokens": 300, "ignore_eos": True, "stream": True},
        ).json()
        with http.stream("GET", f"/queue/jobs/{job['id']}/stream") as response:
            events = []
            for _, data in sse_events(response):
                events.append(data)
                if len(events) == 3:
                    http.delete(f"/queue/jobs/{job['id']}")  # ends the job while the stream is open
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["code"] == "cancelled" and set(error) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("bad", ["nonsense", "1-2-3", "99999999999999999999-0", "1-"])
def test_bad_last_event_id_is_400(api_server, api_key, bad):
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=60) as http:
        job = http.post(
            "/queue/chat/completions", json={"model": CHAT_MODEL, "messages": STORY, "max_tokens": 2}
        ).json()
        response = http.get(f"/queue/jobs/{job['id']}/stream", headers={"Last-Event-ID": bad})
    assert response.status_code == 400 and response.json()["error"]["param"] == "Last-Event-ID"

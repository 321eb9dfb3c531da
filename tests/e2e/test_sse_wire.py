"""The SSE bytes, as clients that are not the openai SDK parse them.

OpenAI sends only `data: {json}` events and `data: [DONE]`. vLLM's load tool
and many hand-written clients split the stream on blank lines, skip lines
starting with `:`, strip a leading `data: ` and `json.loads` the rest: any
other SSE field (`id:`, `event:`) breaks them. The resumable queue route is
different on purpose: there every event carries its `id:`.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from tests.harness import CHAT_MODEL

STORY = [{"role": "user", "content": "Tell me a story about a lighthouse keeper."}]
# Whole body: events of one `data:` line or comment lines, each ended by a blank line, `[DONE]` last.
OPENAI_WIRE = re.compile(r"((data: [^\n]+|:[^\n]*)\n\n)*data: \[DONE\]\n\n")
OPENAI_ROUTES = [
    ("/v1/chat/completions", {"messages": STORY}),
    ("/v1/completions", {"prompt": "Once upon a time"}),
    ("/chat/completions", {"messages": STORY}),
    (f"/engines/{CHAT_MODEL}/completions", {"prompt": "Once upon a time"}),
]


def stream_text(http: httpx.Client, method: str, path: str, body: dict | None = None) -> tuple[str, httpx.Headers]:
    with http.stream(method, path, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return response.read().decode(), response.headers


def parse_like_vllm_bench(text: str) -> list[dict]:
    """vLLM's `bench serve` parsing, step for step: blank-line split, skip comments, strip `data: `."""
    chunks = []
    for message in text.split("\n\n"):
        message = message.strip()
        if not message or message.startswith(":"):
            continue
        payload = message.removeprefix("data: ")
        if payload != "[DONE]":
            chunks.append(json.loads(payload))
    return chunks


def openai_body(body: dict) -> dict:
    return {"model": CHAT_MODEL, "max_tokens": 6, "stream": True, "stream_options": {"include_usage": True}, **body}


@pytest.mark.parametrize(("path", "body"), OPENAI_ROUTES)
def test_openai_routes_send_only_data_lines_and_comments(http, path, body):
    text, _headers = stream_text(http, "POST", path, openai_body(body))
    bad_lines = [line for line in text.split("\n") if line and not line.startswith(("data: ", ":"))]
    assert not bad_lines, f"lines a `data:`-only parser cannot take: {bad_lines[:3]}"
    assert OPENAI_WIRE.fullmatch(text), "not `data: {json}\\n\\n` events ending with `data: [DONE]\\n\\n`"


@pytest.mark.parametrize(("path", "body"), OPENAI_ROUTES[:2])
def test_vllm_bench_parser_reads_every_event(http, path, body):
    text, _headers = stream_text(http, "POST", path, openai_body(body))
    chunks = parse_like_vllm_bench(text)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    assert all(chunk["choices"] for chunk in chunks[:-1])


def test_queue_stream_keeps_an_id_on_every_event(http):
    """Resumable: each `data:` event but `[DONE]` is preceded by its `id:` (what Last-Event-ID names)."""
    body = {"model": CHAT_MODEL, "messages": STORY, "max_tokens": 6, "stream": True}
    job = http.post("/queue/chat/completions", json=body).json()
    text, _headers = stream_text(http, "GET", f"/queue/jobs/{job['id']}/stream")
    events = [event for event in text.split("\n\n") if event and not event.startswith(":")]
    assert events[-1] == "data: [DONE]"
    ids = []
    for event in events[:-1]:
        id_line, data_line = event.split("\n")
        assert re.fullmatch(r"id: \d+-\d+", id_line) and data_line.startswith("data: {")
        ids.append(id_line[4:])
    assert len(ids) == len(set(ids)) >= 2


def test_sync_stream_names_its_job_for_resuming(http):
    """While a synchronous stream runs, its X-Job-Id opens the same job's resumable stream on the queue route.

    (Once delivered, a synchronous job keeps only its status and usage:
    tests/integration/test_endings.py.)
    """
    body = openai_body({"messages": STORY, "max_tokens": 24, "ignore_eos": True})
    with http.stream("POST", "/v1/chat/completions", json=body) as sync:
        job_id = sync.headers["x-job-id"]
        lines = sync.iter_lines()
        first = next(line for line in lines if line.startswith("data: {"))
        resumed, _ = stream_text(http, "GET", f"/queue/jobs/{job_id}/stream")
        rest = [line for line in lines if line.startswith("data: {")]
    again = [line for line in resumed.split("\n") if line.startswith("data: {")]
    assert again == [first, *rest] and len(again) >= 2
    assert http.get(f"/queue/jobs/{job_id}").json()["usage"]["completion_tokens"] == 24

"""OpenAI's Batch API through the official SDK, against gunicorn, the worker and its batch runner.

files.create(purpose="batch") -> batches.create -> poll -> files.content(output_file_id), as a script
written for OpenAI's Batch API does it: chat and embeddings, a bad file, a cancel mid-run.
"""

from __future__ import annotations

import json
import time

from tests.harness import CHAT_MODEL, EMBED_MODEL

TERMINAL = ("completed", "failed", "expired", "cancelled")


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def chat_lines(count: int, prefix: str, **body) -> list[dict]:
    return [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Count to {i}."}], **body},
        }
        for i in range(count)
    ]


def run_batch(client, lines: list[dict], endpoint: str):
    uploaded = client.files.create(file=("requests.jsonl", jsonl(lines)), purpose="batch")
    assert uploaded.purpose == "batch" and uploaded.bytes == len(jsonl(lines))
    return client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h")


def poll(client, batch_id: str, until=lambda b: b.status in TERMINAL, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if until(batch):
            return batch
        time.sleep(0.5)
    raise AssertionError(f"batch {batch_id} did not get there: {batch}")


def content(client, file_id: str | None) -> list[dict]:
    return [] if file_id is None else [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


def test_chat_batch_through_the_sdk(openai_client):
    client = openai_client()
    lines = chat_lines(16, "chat", max_tokens=6, temperature=0)
    batch = run_batch(client, lines, "/v1/chat/completions")
    assert batch.status == "in_progress" and batch.request_counts.total == 16
    done = poll(client, batch.id)
    assert done.status == "completed" and done.request_counts.completed == 16 and done.request_counts.failed == 0
    output = content(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(line["custom_id"] for line in lines)
    assert all(line["response"]["body"]["choices"][0]["message"]["content"] for line in output)
    assert done.usage.output_tokens == sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    assert batch.id in [b.id for b in client.batches.list(limit=100)]


def test_embeddings_batch_through_the_sdk(openai_client, embedding_worker):
    client = openai_client()
    lines = [
        {
            "custom_id": f"emb-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": EMBED_MODEL, "input": f"sentence {i}"},
        }
        for i in range(10)
    ]
    done = poll(client, run_batch(client, lines, "/v1/embeddings").id)
    assert done.status == "completed", done
    output = content(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(line["custom_id"] for line in lines)
    assert all(len(line["response"]["body"]["data"][0]["embedding"]) == 384 for line in output)


def test_a_bad_file_fails_with_per_line_errors(openai_client):
    client = openai_client()
    lines = chat_lines(3, "bad")
    lines[1]["body"]["max_tokens"] = -1
    lines[2]["url"] = "/v1/completions"
    batch = run_batch(client, lines, "/v1/chat/completions")
    assert batch.status == "failed"
    assert [(e.line, e.param) for e in batch.errors.data] == [(2, "body.max_tokens"), (3, "url")]


def test_cancel_mid_run_keeps_partial_output(openai_client):
    client = openai_client()
    lines = chat_lines(40, "cancel", max_tokens=48, ignore_eos=True)
    for line in lines[:4]:  # these finish at once; the long rest is still running when the cancel lands
        line["body"]["max_tokens"] = 1
    batch = run_batch(client, lines, "/v1/chat/completions")
    poll(client, batch.id, until=lambda b: b.request_counts.completed > 0)
    assert client.batches.cancel(batch.id).status in ("cancelling", "cancelled")
    done = poll(client, batch.id, timeout=120)
    assert done.status == "cancelled" and done.cancelled_at
    output, errors = content(client, done.output_file_id), content(client, done.error_file_id)
    assert output and errors
    assert sorted(line["custom_id"] for line in output + errors) == sorted(line["custom_id"] for line in lines)

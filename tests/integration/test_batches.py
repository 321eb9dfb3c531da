"""The Batch API on the real Redis, the real worker and its batch runner: run, validate, cancel, expire."""

from __future__ import annotations

import io
import json

import pytest

from app.auth.keys import KeyStore
from tests.harness import CHAT_MODEL, GHOST_MODEL, wait_until

CHAT = "/v1/chat/completions"


def chat_line(custom_id: str, model: str = CHAT_MODEL, **body) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": f"Say {custom_id}."}], "max_tokens": 4, **body}
    return {"custom_id": custom_id, "method": "POST", "url": CHAT, "body": body}


def jsonl(lines: list) -> bytes:
    return b"".join((line if isinstance(line, bytes) else json.dumps(line).encode()) + b"\n" for line in lines)


def create_batch(client, lines: list, endpoint: str = CHAT, window: str = "24h") -> dict:
    upload = client.post(
        "/v1/files",
        data={"purpose": "batch", "file": (io.BytesIO(jsonl(lines)), "in.jsonl")},
        content_type="multipart/form-data",
    )
    assert upload.status_code == 200, upload.get_data(as_text=True)
    reply = client.post(
        "/v1/batches",
        json={"input_file_id": upload.get_json()["id"], "endpoint": endpoint, "completion_window": window},
    )
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()


def wait_batch(client, batch_id: str, statuses: tuple[str, ...], timeout: float = 300) -> dict:
    seen = {}

    def reached() -> bool:
        seen.update(client.get(f"/v1/batches/{batch_id}").get_json())
        return seen["status"] in statuses

    wait_until(reached, timeout, f"batch {batch_id} to reach {statuses}")
    return seen


def file_lines(client, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    reply = client.get(f"/v1/files/{file_id}/content")
    assert reply.status_code == 200
    return [json.loads(line) for line in reply.get_data().splitlines()]


def test_every_line_answered_once(client):
    lines = [chat_line(f"req-{i}", temperature=0) for i in range(12)]
    batch = create_batch(client, lines)
    assert batch["status"] == "in_progress" and batch["request_counts"]["total"] == 12
    done = wait_batch(client, batch["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    assert done["request_counts"] == {"total": 12, "completed": 12, "failed": 0}
    assert done["error_file_id"] is None and done["finalizing_at"] and done["completed_at"]
    output = file_lines(client, done["output_file_id"])
    assert sorted(line["custom_id"] for line in output) == sorted(line["custom_id"] for line in lines)
    for line in output:
        assert line["response"]["status_code"] == 200 and line["error"] is None
        assert line["response"]["body"]["object"] == "chat.completion"
    prompt = sum(line["response"]["body"]["usage"]["prompt_tokens"] for line in output)
    completion = sum(line["response"]["body"]["usage"]["completion_tokens"] for line in output)
    assert (done["usage"]["input_tokens"], done["usage"]["output_tokens"]) == (prompt, completion)
    assert client.get(f"/v1/files/{done['output_file_id']}").get_json()["purpose"] == "batch_output"
    listed = client.get("/v1/batches", query_string={"limit": 100}).get_json()
    assert batch["id"] in [b["id"] for b in listed["data"]]


def test_bad_lines_fail_the_batch_with_one_error_per_line(bare_client):
    lines = [
        chat_line("ok-1"),
        b"{not json",
        chat_line("ok-1"),  # duplicate custom_id
        {**chat_line("wrong-url"), "url": "/v1/embeddings"},
        chat_line("hot", temperature=5),
        chat_line("nobody", model="no-such-model"),
        chat_line("long", max_tokens=10**6),
        {**chat_line("get"), "method": "GET"},
        chat_line("ok-2"),
    ]
    batch = create_batch(bare_client, lines)
    assert batch["status"] == "failed" and batch["failed_at"], batch
    errors = {error["line"]: error for error in batch["errors"]["data"]}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8]
    assert errors[2]["code"] == "invalid_json"
    assert errors[3]["code"] == "duplicate_custom_id"
    assert errors[4]["param"] == "url"
    assert errors[5]["param"] == "body.temperature"
    assert errors[6]["code"] == "model_not_found"
    assert errors[7]["code"] == "context_length_exceeded"
    assert errors[8]["param"] == "method"
    assert batch["output_file_id"] is None and batch["error_file_id"] is None


def test_cancel_keeps_what_finished(client):
    # A few one-token lines finish at once; the long rest is still running when the cancel lands.
    lines = [chat_line(f"c-{i}", max_tokens=1 if i < 4 else 48, ignore_eos=True) for i in range(40)]
    batch = create_batch(client, lines)
    wait_until(
        lambda: client.get(f"/v1/batches/{batch['id']}").get_json()["request_counts"]["completed"] >= 1,
        300,
        "a first line to finish",
    )
    cancelling = client.post(f"/v1/batches/{batch['id']}/cancel").get_json()
    assert cancelling["status"] in ("cancelling", "cancelled") and cancelling["cancelling_at"]
    done = wait_batch(client, batch["id"], ("cancelled",), 120)
    output, errors = file_lines(client, done["output_file_id"]), file_lines(client, done["error_file_id"])
    ids = [line["custom_id"] for line in output + errors]
    assert sorted(ids) == sorted(line["custom_id"] for line in lines)  # each once, in one of the two files
    assert output and errors and {e["error"]["code"] for e in errors} == {"batch_cancelled"}
    assert done["request_counts"]["completed"] == len(output)
    assert done["request_counts"]["failed"] == len(errors)
    again = client.post(f"/v1/batches/{batch['id']}/cancel")
    assert again.status_code == 200 and again.get_json()["status"] == "cancelled"


def test_past_its_window_a_batch_expires(client):
    batch = create_batch(client, [chat_line(f"e-{i}", model=GHOST_MODEL) for i in range(3)], window="10s")
    done = wait_batch(client, batch["id"], ("expired",), 60)
    errors = file_lines(client, done["error_file_id"])
    assert sorted(e["custom_id"] for e in errors) == ["e-0", "e-1", "e-2"]
    assert {e["error"]["code"] for e in errors} == {"batch_expired"} and done["expired_at"]
    assert done["output_file_id"] is None


@pytest.fixture()
def other_key(redis_server):
    key, _ = KeyStore(redis_server.client()).create(name="batches-other", rpm=1_000_000)
    return {"Authorization": f"Bearer {key}"}


def test_another_key_cannot_see_or_cancel(bare_client, other_key):
    batch = create_batch(bare_client, [chat_line("x", model=GHOST_MODEL)])
    assert bare_client.get(f"/v1/batches/{batch['id']}", headers=other_key).status_code == 404
    assert bare_client.post(f"/v1/batches/{batch['id']}/cancel", headers=other_key).status_code == 404
    file_reply = bare_client.post(
        "/v1/batches",
        json={"input_file_id": batch["input_file_id"], "endpoint": CHAT, "completion_window": "24h"},
        headers=other_key,
    )
    assert file_reply.status_code == 404
    assert bare_client.post(f"/v1/batches/{batch['id']}/cancel").get_json()["status"] in ("cancelling", "cancelled")

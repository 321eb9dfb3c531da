"""A running batch beside a fault: one fresh key's batch of chat lines, and its books when it ends.

The faults that keep (tests/chaos/test_faults.py) each run a batch
(`INFERQ_CHAOS_BATCH_LINES`, default 160, 2.5 engine waves, to keep `make test`
short; run it with 2000 for the issue's figure) beside their interactive load,
injected once some lines have finished, and judged when the batch ends: it
completed, its output and error files together hold each `custom_id` exactly
once, the key was billed exactly the usage of the jobs its lines ran as, which
is what the batch reports and what the output's bodies say, and every job the
key owns ended once (devstack.faults.audit). The batch runner lives in the
workers, so a worker's death also kills the runner's round in progress; its
lock lapses and the restarted worker goes on.
"""

from __future__ import annotations

import json
import os
import time

import httpx

from tasks.keyspace import KEYS
from tests.chaos.stack import ChaosStack
from tests.harness import CHAT_MODEL, wait_until

LINES = int(os.environ.get("INFERQ_CHAOS_BATCH_LINES", "160"))
TOKENS = 8
#: Room for a worker restart (minutes on a busy machine) plus the batch itself.
BATCH_SECONDS = 900


def requests_file() -> bytes:
    lines = []
    for i in range(LINES):
        body = {
            "model": CHAT_MODEL,
            "messages": [{"role": "user", "content": f"Count to {i % 10 + 3}."}],
            "max_tokens": TOKENS,
            "ignore_eos": True,
        }
        lines.append(
            json.dumps({"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions", "body": body})
        )
    return ("\n".join(lines) + "\n").encode()


class BatchRun:
    """One batch from one fresh key, polled with retries (the API may be down for a while)."""

    def __init__(self, stack: ChaosStack, fault: str) -> None:
        self.stack, self.fault, self.since = stack, fault, time.monotonic()
        key, self.owner = stack.new_key(fault)
        self.http = httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {key}"}, timeout=120)
        upload = self.http.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", requests_file())})
        upload.raise_for_status()
        created = self.http.post(
            "/v1/batches",
            json={"input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        )
        created.raise_for_status()
        self.id = created.json()["id"]
        assert created.json()["status"] == "in_progress", created.json()

    def poll(self) -> dict:
        """The batch now; retried while the API is restarting or Redis is away (a 503)."""
        deadline = time.monotonic() + 120
        while True:
            try:
                reply = self.http.get(f"/v1/batches/{self.id}")
                if reply.status_code == 200:
                    return reply.json()
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.fault}: the batch could not be read for 120 s")
            time.sleep(0.5)

    def wait_progress(self, completed: int) -> None:
        wait_until(lambda: self.poll()["request_counts"]["completed"] >= completed, 300, f"{completed} lines done")

    def finish(self) -> dict:
        wait_until(
            lambda: self.poll()["status"] in ("completed", "failed", "cancelled", "expired"),
            BATCH_SECONDS,
            f"batch of {self.fault!r} to end",
            interval=1.0,
        )
        return self.poll()

    def lines(self, file_id: str | None) -> list[dict]:
        if file_id is None:
            return []
        reply = self.http.get(f"/v1/files/{file_id}/content")
        reply.raise_for_status()
        return [json.loads(line) for line in reply.text.splitlines()]


def check_books(run: BatchRun, batch: dict) -> None:
    """Each line once, in one of the two files; billed = the batch's usage = the output's usage; jobs ended once."""
    assert batch["status"] == "completed", batch
    output, errors = run.lines(batch["output_file_id"]), run.lines(batch["error_file_id"])
    answered = [line["custom_id"] for line in output + errors]
    assert sorted(answered) == sorted(f"line-{i}" for i in range(LINES)), (
        f"{run.fault}: {len(answered)} lines for {LINES}, {len(answered) - len(set(answered))} repeated"
    )
    assert batch["request_counts"] == {"total": LINES, "completed": len(output), "failed": len(errors)}
    usage = [line["response"]["body"]["usage"] for line in output]
    in_output = (sum(u["prompt_tokens"] for u in usage), sum(u["completion_tokens"] for u in usage))
    books = run.stack.books(run.fault, run.owner, set(), run.since)
    assert not books.problems(), f"{run.fault}: " + "; ".join(books.problems())
    assert books.billed == (batch["usage"]["input_tokens"], batch["usage"]["output_tokens"])
    if not errors:  # a failed line (a poison job) may have been billed for what it computed
        assert books.billed == in_output, f"{run.fault}: billed {books.billed}, the output's usage {in_output}"
    assert not run.stack.client().zscore(KEYS.active_batches, run.id)


def started_batch(stack: ChaosStack, fault: str) -> BatchRun:
    """A batch under way: a tenth of its lines done, so the fault lands in the middle of it."""
    run = BatchRun(stack, fault)
    run.wait_progress(LINES // 10)
    return run

"""A batch's output and error lines, in OpenAI's shape, from the jobs its lines ran as.

Output file: `{"id", "custom_id", "response": {"status_code": 200, "request_id", "body"}, "error": null}`.
Error file: a request that failed keeps its response (its status and error
body); a line that never ran (the batch was cancelled or expired, or its job
was lost) has `response: null` and an `error` with a code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tasks.jobs import Job

STOPPED = {
    "cancelled": ("batch_cancelled", "This request was not executed: the batch was cancelled."),
    "expired": ("batch_expired", "This request could not be executed before the completion window expired."),
    "lost": ("job_lost", "This request's job record was lost; it was not run."),
}


@dataclass
class Harvest:
    """Ended lines, sorted into the two files, with what they used."""

    output: list[bytes]
    errors: list[bytes]
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, custom_id: str, job_id: str, job: Job | None, stopped_as: str) -> None:
        usage = (job.usage if job else None) or {}
        self.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        self.completion_tokens += int(usage.get("completion_tokens") or 0)
        if job is not None and job.status == "completed" and job.result is not None:
            response = {"status_code": 200, "request_id": job.id, "body": job.result}
            self.output.append(encode(line(custom_id, job_id, response, None)))
        elif job is not None and job.status == "failed":
            response = {"status_code": job.error_status or 500, "request_id": job.id, "body": job.error}
            self.errors.append(encode(line(custom_id, job_id, response, None)))
        else:
            reason = "lost" if job is None else ("expired" if stopped_as == "expired" else "cancelled")
            self.errors.append(stopped_line(custom_id, job_id, reason))


def line(custom_id: str, job_id: str, response: dict[str, Any] | None, error: dict[str, Any] | None) -> dict:
    line_id = "batch_req_" + job_id.removeprefix("job_")
    return {"id": line_id, "custom_id": custom_id, "response": response, "error": error}


def stopped_line(custom_id: str, job_id: str, reason: str) -> bytes:
    code, message = STOPPED[reason]
    return encode(line(custom_id, job_id, None, {"code": code, "message": message}))


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"

"""Server-Sent Events from a job's Redis Stream.

The worker appends deltas to the job's stream; this reads them with blocking
XREADs and writes `data: {chunk}` events, each with the stream entry id as its
SSE `id`, so a client reconnecting with `Last-Event-ID` resumes where it left
off. While the engine is busy, comment lines keep proxies from closing the
connection. An error after the stream started is one `data: {"error": ...}`
event, then `[DONE]`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, stream_with_context

from app import jobs
from app.errors import APIError
from tasks import openai_format
from tasks.cancellation import request_cancel
from tasks.jobstore import events_key

KEEPALIVE = ": keep-alive\n\n"
KEEPALIVE_SECONDS = 15


def _event(data: Any, event_id: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"id: {event_id}\n" if event_id else ""
    return f"{prefix}data: {payload}\n\n"


def _choice_index(delta: dict[str, Any], n: int) -> int:
    return delta["prompt_index"] * n + delta["choice"]["index"]


def _started_choices(job_id: str, last_event_id: str, n: int) -> set[int]:
    """Choices whose first chunk (the one with the role) the client already got before resuming."""
    if last_event_id == "0-0":
        return set()
    entries = jobs.store().redis.xrange(events_key(job_id), "-", last_event_id)
    return {_choice_index(json.loads(fields[b"data"]), n) for _, fields in entries if fields.get(b"type") == b"delta"}


def _replay(job_id: str, request: dict[str, Any], result: dict[str, Any], event_id: str) -> Iterator[str]:
    """A job that wrote no deltas (not submitted for streaming) streams its final answer at once."""
    for choice in result["choices"]:
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        delta = {"index": 0, "text": text, "token_ids": [], "finish_reason": choice["finish_reason"], "logprobs": None}
        chunk = openai_format.stream_chunk(
            job_id=job_id, request=request, index=choice["index"], choice=delta, first=True
        )
        yield _event(chunk, event_id)


def _ending(job_id: str, request: dict[str, Any], entry_id: str, replay_result: bool) -> Iterator[str]:
    record = jobs.store().get(job_id) or {}
    status = record.get("status")
    if status == "completed":
        if replay_result:
            yield from _replay(job_id, request, record["result"], entry_id)
        if request.get("include_usage"):
            yield _event(openai_format.usage_chunk(job_id=job_id, request=request, usage_=record["usage"]), entry_id)
    elif record.get("error"):
        yield _event(record["error"], entry_id)
    else:
        error = APIError(f"The job ended as {status}.", status=500, type="server_error", code=status)
        yield _event(error.to_dict(), entry_id)
    yield _event("[DONE]")


def stream_events(
    job_id: str,
    request: dict[str, Any],
    last_event_id: str = "0-0",
    *,
    replay_result: bool = False,
    timeout: float | None = None,
) -> Iterator[str]:
    """The SSE text of one job, from `last_event_id` on, ending with `[DONE]`."""
    n = request["params"].get("n") or 1
    seen = _started_choices(job_id, last_event_id, n)
    waited = 0.0
    store = jobs.store()
    last = last_event_id
    while True:
        batch = store.read_events(job_id, last, KEEPALIVE_SECONDS * 1000)
        if not batch:
            waited += KEEPALIVE_SECONDS
            if timeout is not None and waited >= timeout:
                error = APIError("The job did not finish in time.", status=504, type="timeout", code="timeout")
                yield _event(error.to_dict())
                yield _event("[DONE]")
                return
            yield KEEPALIVE
            continue
        for entry_id, event in batch:
            last = entry_id
            if event["type"] == "delta":
                delta = json.loads(event["data"])
                index = _choice_index(delta, n)
                chunk = openai_format.stream_chunk(
                    job_id=job_id, request=request, index=index, choice=delta["choice"], first=index not in seen
                )
                seen.add(index)
                yield _event(chunk, entry_id)
            elif event["type"] == "end":
                yield from _ending(job_id, request, entry_id, replay_result)
                return


def sse_response(
    job_id: str,
    request: dict[str, Any],
    *,
    abort_on_disconnect: bool,
    last_event_id: str = "0-0",
    replay_result: bool = False,
    timeout: float | None = None,
) -> Response:
    """Stream a job. A synchronous stream's job is cancelled when its client goes away; a queue job's is not."""
    app = current_app._get_current_object()  # noqa: SLF001 - needed after the request context ends

    def generate() -> Iterator[str]:
        finished = False
        try:
            yield from stream_events(job_id, request, last_event_id, replay_result=replay_result, timeout=timeout)
            finished = True
        finally:
            if not finished and abort_on_disconnect:
                # The client went away: free the engine slot instead of generating for nobody.
                with app.app_context():
                    request_cancel(jobs.store(), job_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Job-Id": job_id}
    return Response(stream_with_context(generate()), mimetype="text/event-stream", headers=headers)

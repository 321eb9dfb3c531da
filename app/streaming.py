"""Server-Sent Events from a job's Redis Stream.

The worker appends deltas to the job's stream; this reads them with blocking
XREADs and writes `data: {chunk}` events, each with the stream entry id as its
SSE `id`, so a client reconnecting with `Last-Event-ID` resumes where it left
off. While the engine is busy, comment lines keep proxies from closing the
connection.
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

KEEPALIVE = ": keep-alive\n\n"


def _event(data: Any, event_id: str | None = None) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"id: {event_id}\n" if event_id else ""
    return f"{prefix}data: {payload}\n\n"


def _replay(job_id: str, request: dict[str, Any], result: dict[str, Any], event_id: str) -> Iterator[str]:
    """A job that wrote no deltas (not submitted for streaming) streams its final answer at once."""
    for choice in result["choices"]:
        text = choice["message"]["content"] if "message" in choice else choice["text"]
        delta = {"index": 0, "text": text, "token_ids": [], "finish_reason": choice["finish_reason"], "logprobs": None}
        yield _event(
            openai_format.stream_chunk(job_id=job_id, request=request, index=choice["index"], choice=delta, first=True),
            event_id,
        )


def stream_events(
    job_id: str, request: dict[str, Any], last_event_id: str = "0-0", replay_result: bool = False
) -> Iterator[str]:
    """The SSE text of one job, from `last_event_id` on, ending with `[DONE]`."""
    n = request["params"].get("n") or 1
    seen: set[int] = set()
    timeout = jobs.config()["SYNC_TIMEOUT_SECONDS"]
    store = jobs.store()
    try:
        last = last_event_id
        while True:
            batch = store.read_events(job_id, last, 15_000)
            if not batch:
                yield KEEPALIVE
                timeout -= 15
                if timeout <= 0:
                    raise APIError("The job did not finish in time.", status=504, type="timeout", code="timeout")
                continue
            for entry_id, event in batch:
                last = entry_id
                if event["type"] == "delta":
                    delta = json.loads(event["data"])
                    choice = delta["choice"]
                    index = delta["prompt_index"] * n + choice["index"]
                    chunk = openai_format.stream_chunk(
                        job_id=job_id, request=request, index=index, choice=choice, first=index not in seen
                    )
                    seen.add(index)
                    yield _event(chunk, entry_id)
                elif event["type"] == "end":
                    record = store.get(job_id) or {}
                    if record.get("status") == "completed":
                        if replay_result:
                            yield from _replay(job_id, request, record["result"], entry_id)
                        if request.get("include_usage"):
                            yield _event(
                                openai_format.usage_chunk(job_id=job_id, request=request, usage_=record["usage"]),
                                entry_id,
                            )
                    elif record.get("error"):
                        yield _event(record["error"], entry_id)
                    else:
                        yield _event(
                            {
                                "error": {
                                    "message": f"The job ended as {record.get('status')}.",
                                    "type": "server_error",
                                    "param": None,
                                    "code": record.get("status"),
                                }
                            },
                            entry_id,
                        )
                    yield _event("[DONE]")
                    return
    except APIError as err:
        yield _event(err.to_dict())
        yield _event("[DONE]")


def sse_response(
    job_id: str,
    request: dict[str, Any],
    *,
    abort_on_disconnect: bool,
    last_event_id: str = "0-0",
    replay_result: bool = False,
) -> Response:
    app = current_app._get_current_object()  # noqa: SLF001 - needed after the request context ends

    def generate() -> Iterator[str]:
        finished = False
        try:
            yield from stream_events(job_id, request, last_event_id, replay_result)
            finished = True
        finally:
            if not finished and abort_on_disconnect:
                # The client went away: free the engine slot instead of generating for nobody.
                with app.app_context():
                    request_cancel(jobs.store(), job_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Job-Id": job_id}
    return Response(stream_with_context(generate()), mimetype="text/event-stream", headers=headers)

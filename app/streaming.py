"""Server-Sent Events from a job's Redis Stream.

The worker appends deltas to the job's stream; this reads them with blocking
reads (one per API process: tasks.jobs.event_hub) and writes `data: {chunk}` events. On the OpenAI routes that is all
there is, as OpenAI sends it (clients and load tools split on blank lines and
parse whatever follows `data: `; an `id:` line breaks them). The queue's
stream route (`GET /queue/jobs/<id>/stream`) is resumable: each event there
also carries the stream entry id as its SSE `id`, and a client reconnecting
with `Last-Event-ID` resumes where it left off. While the engine is busy,
comment lines keep proxies from closing the connection. An error after the
stream started is one `data: {"error": ...}` event, then `[DONE]`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterator
from typing import Any

from flask import Response, current_app, stream_with_context

from app import jobs
from tasks.jobs import Job
from tasks.protocol import bodies
from tasks.protocol.errors import GatewayTimeout, ServerError
from tasks.protocol.requests import GenerationRequest
from workers.outputs import Choice, Delta, ToolCall

log = logging.getLogger(__name__)
KEEPALIVE = ": keep-alive\n\n"
KEEPALIVE_SECONDS = 15
DONE = "data: [DONE]\n\n"


class _Writer:
    """Turns one job's events into SSE text; `resumable` adds the `id:` lines."""

    def __init__(self, job: Job, resumable: bool, resumed_from: str) -> None:
        assert isinstance(job.request, GenerationRequest)
        self.job, self.request, self.resumable = job, job.request, resumable
        # Choices whose first chunk (the one with the role) the client got before resuming.
        seen = jobs.service().deltas_until(job.id, resumed_from) if resumed_from != "0-0" else []
        self.started = {self.index(delta) for delta in seen}
        #: Text each choice has streamed so far (text completions' logprobs count offsets from it).
        self.streamed: dict[int, int] = {}
        for delta in seen:
            self._advance(delta)

    def _advance(self, delta: Delta) -> int:
        """The choice's text offset before this delta; records the delta's text."""
        index = self.index(delta)
        before = self.streamed.get(index, 0)
        self.streamed[index] = before + len(delta.choice.text)
        return before

    def index(self, delta: Delta) -> int:
        return delta.prompt_index * self.request.sampling.n + delta.choice.index

    def event(self, data: Any, event_id: str | None) -> str:
        payload = json.dumps(data, separators=(",", ":"))
        return f"id: {event_id}\ndata: {payload}\n\n" if self.resumable and event_id else f"data: {payload}\n\n"

    def delta(self, delta: Delta, entry_id: str) -> str:
        index, offset = self.index(delta), self._advance(delta)
        chunk = bodies.stream_chunk(self.job.id, self.request, index, delta.choice, index not in self.started, offset)
        self.started.add(index)
        return self.event(chunk, entry_id)

    def ending(self, entry_id: str, replay: bool) -> Iterator[str]:
        # A synchronous stream is read once: collect it (trimmed to what billing keeps).
        service = jobs.service()
        job = service.get(self.job.id) if self.resumable else service.collect(self.job)
        if job is None:
            yield self.event(ServerError("The job record disappeared.").to_dict(), entry_id)
        elif job.status == "completed" and (job.result is not None or not replay):
            # A reader that streamed the deltas needs only the usage, which a
            # collected (trimmed) record keeps; a replay needs the result itself.
            if replay:
                yield from self._replay(job.result, entry_id)
            if self.request.include_usage:
                yield self.event(bodies.usage_chunk(job.id, self.request, job.usage or {}), entry_id)
        else:
            yield self.event(jobs.error_of(job).to_dict(), entry_id)
        yield DONE

    def _replay(self, result: dict[str, Any], entry_id: str) -> Iterator[str]:
        """A job that wrote no deltas (not submitted for streaming) streams its final answer at once."""
        for choice in result["choices"]:
            message = choice.get("message") or {}
            text = (message.get("content") or "") if "message" in choice else choice["text"]
            calls = [ToolCall.from_openai(call) for call in message["tool_calls"]] if "tool_calls" in message else None
            delta = Choice(0, text, finish_reason=choice["finish_reason"], tool_calls=calls)
            yield self.event(bodies.stream_chunk(self.job.id, self.request, choice["index"], delta, True), entry_id)


def stream_events(
    job: Job, *, resumable: bool, last_event_id: str = "0-0", timeout: float | None = None
) -> Generator[str, None, bool]:
    """The SSE text of one job, from `last_event_id` on, ending with `[DONE]`; returns False if it timed out."""
    writer = _Writer(job, resumable, last_event_id)
    waited, last = 0.0, last_event_id
    with jobs.service().watch(job.id, last_event_id) as waiter:
        while True:
            batch = waiter.read(KEEPALIVE_SECONDS * 1000)
            if not batch:
                if _stream_gone(job.id):
                    yield from writer.ending(last, replay=False)
                    return True
                waited += KEEPALIVE_SECONDS
                if timeout is not None and waited >= timeout:
                    yield writer.event(GatewayTimeout("The job did not finish in time.").to_dict(), None)
                    yield DONE
                    return False
                yield KEEPALIVE
                continue
            for entry_id, event in batch:
                last = entry_id
                if event["type"] == "delta":
                    yield writer.delta(Delta.from_json(json.loads(event["data"])), entry_id)
                elif event["type"] == "end":
                    yield from writer.ending(entry_id, replay=not job.request.stream)
                    return True


def _stream_gone(job_id: str) -> bool:
    """The job ended and its events were trimmed under a waiting reader: the end it waits for is gone too."""
    service = jobs.service()
    current = service.get(job_id)
    return current is None or (current.ended and not service.has_events(job_id))


def sse_response(
    job: Job,
    *,
    resumable: bool,
    abort_on_disconnect: bool,
    last_event_id: str = "0-0",
    timeout: float | None = None,
) -> Response:
    """Stream a job. A synchronous stream's job is cancelled when its client goes away or times out.

    A queue job's is not: it runs on, and the client may resume its stream.
    """
    app = current_app._get_current_object()  # noqa: SLF001 - needed after the request context ends

    def generate() -> Iterator[str]:
        ended = False
        try:
            ended = yield from stream_events(job, resumable=resumable, last_event_id=last_event_id, timeout=timeout)
        except Exception:  # noqa: BLE001 - the stream has started: end it with an error event, not a cut
            log.exception("stream of job %s failed", job.id)
            yield f"data: {json.dumps(ServerError('The stream failed.').to_dict())}\n\n" + DONE
        finally:
            if abort_on_disconnect and not ended:
                # Gone or timed out: free the engine slot instead of generating for nobody.
                with app.app_context():
                    jobs.service().cancel(job)
                    jobs.service().release(job)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Job-Id": job.id}
    return Response(stream_with_context(generate()), mimetype="text/event-stream", headers=headers)

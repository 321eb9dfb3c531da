"""Responses API streaming: a Responses job's Redis event stream as OpenAI's numbered Responses events.

Each event goes out as `event: <type>` and `data: {json}` (with `type` and
`sequence_number` inside the data, which is what the openai SDK parses), as
OpenAI sends it; no `[DONE]`. The events are a pure function of the job's
stream (the worker's deltas, then its end) and its final record, replayed
from the stream's start on every read: so `GET /v1/responses/{id}?stream=true
&starting_after=N` numbers them exactly as the first read did and sends those
after N. A job that streamed no deltas (created without `stream`, or with
tools, whose calls are parsed from the whole answer) sends its text as one
delta when it ends. Comment lines keep proxies from closing an idle stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator, Iterator
from typing import Any

from flask import Response, current_app, stream_with_context

from app import jobs
from tasks.jobs import Job
from tasks.protocol.errors import GatewayTimeout, ServerError
from tasks.protocol.response_objects import (
    ResponseRecord,
    answer,
    call_item,
    message_item,
    render,
    text_part,
)
from tasks.protocol.responses import ResponseParams, message_id
from workers.outputs import Delta

log = logging.getLogger(__name__)
KEEPALIVE = ": keep-alive\n\n"
KEEPALIVE_SECONDS = 15
#: The terminal event per Response status (a cancelled response ends with `response.failed`: the SDK knows no other).
TERMINAL = {"completed": "response.completed", "incomplete": "response.incomplete"}


def record_of(job: Job) -> ResponseRecord:
    """The job record as the Response object sees it."""
    return ResponseRecord(
        job_id=job.id,
        model=job.model,
        status=job.status,
        created_at=job.created_at,
        params=ResponseParams.from_json(job.meta),
        completed_at=job.completed_at,
        result=job.result,
        error=job.error,
        usage=job.usage,
    )


class EventWriter:
    """Numbers every event it makes; writes only those after `starting_after` (a resumed reader has the rest)."""

    def __init__(self, job: Job, starting_after: int | None) -> None:
        self.job, self.after = job, -1 if starting_after is None else starting_after
        self.sequence = 0
        self.item = message_id(job.id)
        self.opened = False
        self.streamed: list[str] = []

    def event(self, kind: str, **payload: Any) -> Iterator[str]:
        number, self.sequence = self.sequence, self.sequence + 1
        if number > self.after:
            data = json.dumps({"type": kind, **payload, "sequence_number": number}, separators=(",", ":"))
            yield f"event: {kind}\ndata: {data}\n\n"

    def opening(self) -> Iterator[str]:
        record = record_of(self.job)
        first = "queued" if record.params.background and self.job.status == "queued" else "in_progress"
        yield from self.event("response.created", response=render(record, status=first))
        yield from self.event("response.in_progress", response=render(record, status="in_progress"))

    def _open_message(self) -> Iterator[str]:
        if not self.opened:
            self.opened = True
            yield from self.event(
                "response.output_item.added", output_index=0, item=message_item(self.job.id, None, "in_progress")
            )
            where = {"item_id": self.item, "output_index": 0, "content_index": 0}
            yield from self.event("response.content_part.added", **where, part=text_part(""))

    def delta(self, text: str) -> Iterator[str]:
        yield from self._open_message()
        if text:
            self.streamed.append(text)
            where = {"item_id": self.item, "output_index": 0, "content_index": 0}
            yield from self.event("response.output_text.delta", **where, delta=text, logprobs=[])

    def _close_message(self, text: str, status: str) -> Iterator[str]:
        streamed = "".join(self.streamed)
        if text.startswith(streamed) and len(text) > len(streamed):
            yield from self.delta(text[len(streamed) :])  # what no delta carried (an unstreamed job: all of it)
        yield from self._open_message()
        where = {"item_id": self.item, "output_index": 0, "content_index": 0}
        yield from self.event("response.output_text.done", **where, text=text, logprobs=[])
        yield from self.event("response.content_part.done", **where, part=text_part(text))
        yield from self.event("response.output_item.done", output_index=0, item=message_item(self.job.id, text, status))

    def _calls(self, calls: list[dict[str, Any]], first_index: int) -> Iterator[str]:
        for i, call in enumerate(calls):
            index, done = first_index + i, call_item(self.job.id, i, call)
            yield from self.event(
                "response.output_item.added", output_index=index, item=call_item(self.job.id, i, call, "in_progress")
            )
            where = {"item_id": done["id"], "output_index": index}
            yield from self.event("response.function_call_arguments.delta", **where, delta=done["arguments"])
            yield from self.event("response.function_call_arguments.done", **where, arguments=done["arguments"])
            yield from self.event("response.output_item.done", output_index=index, item=done)

    def ending(self, job: Job) -> Iterator[str]:
        """The output items' closing events, then the terminal event with the whole Response."""
        record = record_of(job)
        status = record.response_status
        if status in ("completed", "incomplete"):
            text, calls = answer(record.result)
            text = text or "".join(self.streamed)
            with_message = bool(text) or self.opened or not calls
            if with_message:
                yield from self._close_message(text, "incomplete" if status == "incomplete" else "completed")
            yield from self._calls(calls, int(with_message))
        yield from self.event(TERMINAL.get(status, "response.failed"), response=render(record))

    def error(self, error: ServerError | GatewayTimeout) -> Iterator[str]:
        body = error.to_dict()["error"]
        yield from self.event("error", code=body["code"] or body["type"], message=body["message"], param=None)


def response_events(
    job: Job, writer: EventWriter, *, collect: bool, timeout: float | None = None
) -> Generator[str, None, bool]:
    """The events of one Responses job from the start of its stream; returns False if it timed out.

    `collect`: a synchronous caller reads its ended job once (which frees its waiting slot).
    """
    service, waited = jobs.service(), 0.0
    yield from writer.opening()
    if job.ended and not service.has_events(job.id):  # a stream trimmed or never kept: the record has the rest
        yield from _end(writer, job, collect)
        return True
    with service.watch(job.id) as waiter:
        while True:
            batch = waiter.read(KEEPALIVE_SECONDS * 1000)
            if not batch:
                current = service.get(job.id)
                if current is None or (current.ended and not service.has_events(job.id)):
                    yield from _end(writer, job, collect)  # ended, and its stream trimmed under us
                    return True
                waited += KEEPALIVE_SECONDS
                if timeout is not None and waited >= timeout:
                    yield from writer.error(GatewayTimeout("The response did not finish in time."))
                    return False
                yield KEEPALIVE
                continue
            for _entry_id, event in batch:
                if event["type"] == "delta":
                    yield from writer.delta(Delta.from_json(json.loads(event["data"])).choice.text)
                elif event["type"] == "end":
                    yield from _end(writer, job, collect)
                    return True


def _end(writer: EventWriter, job: Job, collect: bool) -> Iterator[str]:
    ended = jobs.service().collect(job) if collect else jobs.service().get(job.id)
    if ended is None:
        yield from writer.error(ServerError("The response's record disappeared."))
        return
    yield from writer.ending(ended)


def sse_response(
    job: Job, *, synchronous: bool, starting_after: int | None = None, timeout: float | None = None
) -> Response:
    """Stream a Responses job. A synchronous one is cancelled when its client goes away or it times out;
    a background one runs on, and its stream can be read again (`starting_after`)."""
    app = current_app._get_current_object()  # noqa: SLF001 - needed after the request context ends

    def generate() -> Iterator[str]:
        ended, writer = False, EventWriter(job, starting_after)
        try:
            ended = yield from response_events(job, writer, collect=synchronous, timeout=timeout)
        except Exception:  # noqa: BLE001 - the stream has started: end it with an error event, not a cut
            log.exception("responses stream of job %s failed", job.id)
            yield from writer.error(ServerError("The stream failed."))
        finally:
            if synchronous and not ended:
                with app.app_context():
                    jobs.service().cancel(job)
                    jobs.service().release(job)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Job-Id": job.id}
    return Response(stream_with_context(generate()), mimetype="text/event-stream", headers=headers)

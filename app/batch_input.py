"""A batch's input file, line by line, into the prepared file the batch runner feeds from.

Every line is checked before anything runs, exactly as its synchronous route
would check it (the route's schema, then app.job_requests: model, template,
context length, fan-out, token ids), plus what only a batch line has: JSON of
its own, a unique `custom_id`, `method` POST and a `url` equal to the batch's
endpoint. A file with any bad line fails the whole batch with one error per
line (`line` is the file's line number). A good line is written as its typed
request (token ids), so the workers never tokenise and a line is never
validated twice.

The file is read as a stream; under gunicorn's gevent workers the loop yields
now and then, so a 50 000-line validation does not stall the process's other
requests, and it beats the batch's heartbeat so that a validation whose API
process dies fails the batch (tasks.batches.runner) instead of leaving it
`validating`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from marshmallow import Schema, ValidationError

from app.api.routing import read_json
from app.errors import validation_error
from app.job_requests import chat_request, completion_request, embedding_request, resolve_model
from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.completions import CompletionRequestSchema
from app.schemas.embeddings import EmbeddingRequestSchema
from tasks.batches.record import MAX_LINES
from tasks.protocol.errors import APIError, InvalidRequest

#: endpoint -> (the route's schema, its request builder, the model kind it needs).
ROUTES: dict[str, tuple[type[Schema], Callable[..., Any], str]] = {
    "/v1/chat/completions": (ChatCompletionRequestSchema, chat_request, "generate"),
    "/v1/completions": (CompletionRequestSchema, completion_request, "generate"),
    "/v1/embeddings": (EmbeddingRequestSchema, embedding_request, "embed"),
}
MAX_CUSTOM_ID = 512
#: Yield to other greenlets, and beat the heartbeat, every this many lines.
YIELD_EVERY, BEAT_EVERY = 50, 1000


@dataclass
class Validated:
    total: int = 0
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)


def lines(source: BinaryIO, limit: int) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each non-blank line; None for a line longer than `limit` (skipped whole)."""
    number = 0
    while True:
        raw = source.readline(limit + 1)
        if not raw:
            return
        number += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (rest := source.readline(limit + 1)) and not rest.endswith(b"\n"):
                pass
            yield number, None
        elif raw.strip():
            yield number, raw


def validate(source: BinaryIO, endpoint: str, sink: BinaryIO, line_limit: int, beat: Callable[[], None]) -> Validated:
    """Check every line; write the prepared lines to `sink` (meaningful only if no line failed)."""
    schema_class, build, kind = ROUTES[endpoint]
    schema, seen, result = schema_class(), set(), Validated()
    for number, raw in lines(source, line_limit):
        result.total += 1
        if result.total % YIELD_EVERY == 0:
            time.sleep(0)  # gevent's sleep under gunicorn: let other requests run
        if result.total % BEAT_EVERY == 0:
            beat()
        if result.total > MAX_LINES:
            result.errors.append(_error(number, InvalidRequest(f"A batch may hold at most {MAX_LINES} requests.")))
            break
        try:
            custom_id, request = _line(raw, endpoint, schema, build, kind, seen, line_limit)
        except APIError as exc:
            result.errors.append(_error(number, exc))
            continue
        result.model = result.model or request.model
        if not result.errors:
            prepared = {"custom_id": custom_id, "request": request.to_json()}
            sink.write(json.dumps(prepared, separators=(",", ":")).encode() + b"\n")
    return result


def _line(
    raw: bytes | None, endpoint: str, schema: Schema, build: Callable, kind: str, seen: set[str], limit: int
) -> tuple[str, Any]:
    if raw is None:
        raise InvalidRequest(f"The line is longer than {limit} bytes.", code="line_too_long")
    document = read_json(raw)
    custom_id = document.get("custom_id")
    if not isinstance(custom_id, str) or not 0 < len(custom_id) <= MAX_CUSTOM_ID:
        raise InvalidRequest(f"custom_id must be a string of 1 to {MAX_CUSTOM_ID} characters.", param="custom_id")
    if custom_id in seen:
        raise InvalidRequest(
            f"The custom_id {custom_id!r} is used by an earlier line; each line needs its own.",
            param="custom_id",
            code="duplicate_custom_id",
        )
    seen.add(custom_id)
    if document.get("method") != "POST":
        raise InvalidRequest("method must be POST.", param="method")
    if document.get("url") != endpoint:
        raise InvalidRequest(f"url must be the batch's endpoint, {endpoint}.", param="url", code="invalid_url")
    body = document.get("body")
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object: the request the endpoint takes.", param="body")
    try:
        data = schema.load(body)
    except ValidationError as err:
        raise _in_body(validation_error(err)) from err
    if data.get("stream"):
        raise InvalidRequest("A batch request cannot stream.", param="body.stream")
    try:
        spec = resolve_model(data.get("model"), kind=kind)
        return custom_id, build(spec, data)
    except APIError as exc:
        raise _in_body(exc) from exc


def _in_body(exc: APIError) -> APIError:
    exc.param = f"body.{exc.param}" if exc.param else "body"
    return exc


def _error(number: int, exc: APIError) -> dict[str, Any]:
    return {"code": exc.code or "invalid_request", "message": exc.message, "param": exc.param, "line": number}

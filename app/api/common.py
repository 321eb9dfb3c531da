"""What every view needs: the JSON body, the caller, and the reply to a generation."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify, request
from marshmallow import Schema
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app import jobs
from app.context import settings
from app.errors import InvalidRequest
from tasks.models import ModelSpec

ANONYMOUS = "anonymous"


def load_body(schema: Schema) -> dict[str, Any]:
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json.")
    try:
        body = request.get_json()
    except BadRequest as exc:
        raise InvalidRequest("The request body is not valid JSON.", code="invalid_json") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return schema.load(body)


def owner() -> str:
    return getattr(g, "owner", ANONYMOUS)


def run_generation(spec: ModelSpec, job_request: dict[str, Any]) -> Response:
    """Send the job through the queue and answer synchronously (or stream it)."""
    jobs.wait_for_worker(spec)
    stream = bool(job_request.get("stream"))
    job_id = jobs.submit(spec, job_request, owner=owner(), stream=stream)["id"]
    if stream:
        from app.streaming import sse_response

        timeout = settings().sync_timeout_seconds
        return sse_response(job_id, job_request, abort_on_disconnect=True, timeout=timeout)
    return jsonify(jobs.wait_result(job_id, settings().sync_timeout_seconds))

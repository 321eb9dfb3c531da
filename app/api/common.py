"""What every generation view needs: the JSON body, and the reply to a job."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request
from marshmallow import Schema
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from app import jobs
from app.context import settings
from tasks.models import ModelSpec
from tasks.protocol.errors import InvalidRequest
from tasks.protocol.requests import JobRequest


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


def run_generation(spec: ModelSpec, job_request: JobRequest) -> Response:
    """Send the job through the queue and answer when it ends (or stream it): every synchronous route."""
    jobs.wait_for_worker(spec)
    job = jobs.submit(job_request)
    timeout = settings().sync_timeout_seconds
    if job_request.stream:
        from app.streaming import sse_response

        return sse_response(job, resumable=False, abort_on_disconnect=True, timeout=timeout)
    return jsonify(jobs.wait_result(job.id, timeout))

"""Batch submitters: submit, poll (and long-poll), stream, cancel and list jobs."""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import UnsupportedMediaType

from app import jobs
from app.api.common import load_body
from app.context import settings
from app.inference import chat_request, completion_request, resolve_model
from app.queue_jobs import job_object, list_jobs, long_poll, retry_after
from app.schemas.queue import JobListQuerySchema, PollQuerySchema, QueueChatRequestSchema, QueueCompletionRequestSchema
from app.streaming import sse_response
from tasks.jobs import ALREADY_ENDED, Idempotency, Job
from tasks.protocol.errors import APIError, InvalidRequest

blueprint = Blueprint("queue", __name__, url_prefix="/queue")
EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
MAX_IDEMPOTENCY_KEY = 255
chat_schema = QueueChatRequestSchema()
completion_schema = QueueCompletionRequestSchema()
list_query = JobListQuerySchema()
poll_query = PollQuerySchema()


def _job_response(job: Job, status: int = 200):
    obj = job_object(job)
    response = jsonify(obj)
    response.status_code = status
    after = retry_after(job, obj)
    if after is not None:
        response.headers["Retry-After"] = str(after)
    return response


def _idempotency() -> Idempotency | None:
    """The caller's Idempotency-Key, scoped to its API key by the job service."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.", param="Idempotency-Key")
    return Idempotency.of(key, request.get_data())


def _submit(schema, build):
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json.")
    idempotency = _idempotency()
    data = load_body(schema)
    spec = resolve_model(data.get("model"))
    job = jobs.submit(
        build(spec, data),
        priority=data["priority"],
        expires_in=data.get("expires_in"),
        listed=True,
        idempotency=idempotency,
    )
    return _job_response(job, 202)


@blueprint.post("/chat/completions")
def submit_chat():
    return _submit(chat_schema, chat_request)


@blueprint.post("/completions")
def submit_completion():
    return _submit(completion_schema, completion_request)


@blueprint.get("/jobs/<job_id>")
@blueprint.get("/chat/completions/<job_id>")
@blueprint.get("/completions/<job_id>")
def get_job(job_id: str):
    wait = poll_query.load(request.args)["wait"]
    maximum = settings().max_poll_wait_seconds
    if wait > maximum:
        raise InvalidRequest(f"wait must be at most {maximum:g} seconds.", param="wait")
    job = jobs.service().owned(job_id, jobs.owner())
    return _job_response(long_poll(job, wait))


@blueprint.delete("/jobs/<job_id>")
@blueprint.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    service = jobs.service()
    job = service.owned(job_id, jobs.owner())
    if service.cancel(job) == ALREADY_ENDED and job.status != "cancelled":
        raise APIError(
            f"The job {job_id} already ended as {job.status}; it cannot be cancelled.",
            status=409,
            code="job_already_ended",
        )
    return _job_response(service.owned(job_id, jobs.owner()))


@blueprint.get("/jobs/<job_id>/stream")
def stream_job(job_id: str):
    job = jobs.service().owned(job_id, jobs.owner())
    last_event_id = request.headers.get("Last-Event-ID", "0-0")
    if not EVENT_ID.fullmatch(last_event_id):
        raise InvalidRequest("Last-Event-ID must be an event id this stream sent.", param="Last-Event-ID")
    return sse_response(job, resumable=True, abort_on_disconnect=False, last_event_id=last_event_id)


@blueprint.get("/jobs")
def list_all():
    query = list_query.load(request.args)
    data, has_more = list_jobs(jobs.owner(), query["status"], query["limit"], query["after"])
    return jsonify(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
    )

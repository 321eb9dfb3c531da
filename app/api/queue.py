"""Batch submitters: submit, poll (and long-poll), stream, cancel and list jobs."""

from __future__ import annotations

from functools import wraps

from flask import jsonify, request
from werkzeug.exceptions import UnsupportedMediaType

from app import jobs
from app.api.routing import SSE, SSE_SCHEMA, Blueprint
from app.context import settings
from app.job_requests import chat_request, completion_request, resolve_model
from app.queue_jobs import job_object, list_jobs, long_poll, retry_after
from app.schemas.queue import (
    JobListQuerySchema,
    JobListSchema,
    JobSchema,
    PollQuerySchema,
    QueueChatRequestSchema,
    QueueCompletionRequestSchema,
)
from app.streaming import sse_response
from tasks.jobs import ALREADY_ENDED, Idempotency, Job
from tasks.jobs.event_hub import is_event_id
from tasks.protocol.errors import APIError, InvalidRequest, NotFound

blueprint = Blueprint("queue", __name__, tag="Queue", prefixes={"": "/queue"}, description="Queued jobs.")
MAX_IDEMPOTENCY_KEY = 255


def _job_response(job: Job, status: int = 200):
    obj = job_object(job)
    response = jsonify(obj)
    response.status_code = status
    after = retry_after(job, obj)
    if after is not None:
        response.headers["Retry-After"] = str(after)
    return response


def _idempotency() -> Idempotency | None:
    """The caller's Idempotency-Key (the job service scopes it to the API key)."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters.", param="Idempotency-Key")
    return Idempotency.of(key, request.get_data())


def _replayed(view):
    """Answer a repeated Idempotency-Key with its job before the body is parsed (415 first, as ever)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        if not request.is_json:
            raise UnsupportedMediaType("Content-Type must be application/json.")
        idempotency = _idempotency()
        earlier = jobs.service().replay(jobs.owner(), idempotency) if idempotency else None
        if earlier is not None:
            return _job_response(earlier, 202)
        return view(*args, **kwargs)

    return wrapper


def _submit(data, build):
    spec = resolve_model(data.get("model"))
    job = jobs.service().submit(
        owner=jobs.owner(),
        request=build(spec, data),
        priority=data["priority"],
        expires_in=data.get("expires_in"),
        listed=True,
        idempotency=_idempotency(),
    )
    return _job_response(job, 202)


@blueprint.post("/chat/completions")
@_replayed
@blueprint.arguments(QueueChatRequestSchema)
@blueprint.response(202, JobSchema)
@blueprint.errors(400, 401, 404, 409, 415, 429)
def submit_chat(data: dict):
    """Queue a chat completion; answers 202 with the job at once."""
    return _submit(data, chat_request)


@blueprint.post("/completions")
@_replayed
@blueprint.arguments(QueueCompletionRequestSchema)
@blueprint.response(202, JobSchema)
@blueprint.errors(400, 401, 404, 409, 415, 429)
def submit_completion(data: dict):
    """Queue a text completion; answers 202 with the job at once."""
    return _submit(data, completion_request)


# One view, polled under each path a submitter may know the job by.
@blueprint.get("/jobs/<job_id>", endpoint="get_job")
@blueprint.get("/chat/completions/<job_id>", endpoint="get_chat_job")
@blueprint.get("/completions/<job_id>", endpoint="get_completion_job")
@blueprint.arguments(PollQuerySchema, location="query")
@blueprint.response(200, JobSchema)
@blueprint.errors(400, 401, 404, 429)
def get_job(query: dict, job_id: str):
    """Poll a job (long-poll with `wait`)."""
    wait = query["wait"]
    maximum = settings().max_poll_wait_seconds
    if wait > maximum:
        raise InvalidRequest(f"wait must be at most {maximum:g} seconds.", param="wait")
    return _job_response(long_poll(jobs.service().owned(job_id, jobs.owner()), wait))


@blueprint.delete("/jobs/<job_id>", endpoint="cancel_job")
@blueprint.post("/jobs/<job_id>/cancel", endpoint="cancel_job_post")
@blueprint.response(200, JobSchema)
@blueprint.errors(401, 404, 409, 429)
def cancel_job(job_id: str):
    """Cancel a job."""
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
@blueprint.response(200, SSE_SCHEMA, content_type=SSE)
@blueprint.errors(400, 401, 404, 429)
def stream_job(job_id: str):
    """Stream a job's output as server-sent events (resumable with Last-Event-ID)."""
    job = jobs.service().owned(job_id, jobs.owner())
    if job.ended and (job.request is None or not jobs.service().has_events(job.id)):
        raise NotFound(
            f"The stream of job {job_id} is no longer kept: a synchronous job keeps only its status and usage "
            f"once its answer was delivered. GET /queue/jobs/{job_id} has those.",
            code="stream_expired",
        )
    last_event_id = request.headers.get("Last-Event-ID", "0-0")
    if not is_event_id(last_event_id):
        raise InvalidRequest("Last-Event-ID must be an event id this stream sent.", param="Last-Event-ID")
    return sse_response(job, resumable=True, abort_on_disconnect=False, last_event_id=last_event_id)


@blueprint.get("/jobs")
@blueprint.arguments(JobListQuerySchema, location="query")
@blueprint.response(200, JobListSchema)
@blueprint.errors(400, 401, 429)
def list_all(query: dict):
    """List the caller's queued jobs, newest first."""
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

"""Batch submitters: submit, poll (and long-poll), stream, cancel and list jobs."""

from __future__ import annotations

import re

from flask import Blueprint, jsonify, request
from werkzeug.exceptions import UnsupportedMediaType

from app import jobs
from app.api.common import load_body, owner
from app.context import settings
from app.errors import APIError, InvalidRequest
from app.idempotency import remember, replay
from app.inference import chat_request, completion_request, resolve_model
from app.queue_jobs import job_object, list_jobs, long_poll, owned_job, retry_after
from app.schemas.queue import JobListQuerySchema, PollQuerySchema, QueueChatRequestSchema, QueueCompletionRequestSchema
from app.streaming import sse_response
from tasks.cancellation import request_cancel
from tasks.jobstore import ALREADY_ENDED

blueprint = Blueprint("queue", __name__, url_prefix="/queue")
EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
chat_schema = QueueChatRequestSchema()
completion_schema = QueueCompletionRequestSchema()
list_query = JobListQuerySchema()
poll_query = PollQuerySchema()


def _job_response(record: dict, status: int = 200):
    obj = job_object(record)
    response = jsonify(obj)
    response.status_code = status
    after = retry_after(obj)
    if after is not None:
        response.headers["Retry-After"] = str(after)
    return response


def _submit(schema, build):
    if not request.is_json:
        raise UnsupportedMediaType("Content-Type must be application/json.")
    key = request.headers.get("Idempotency-Key")
    existing = replay(owner(), key, request.get_data())
    if existing is not None:
        return _job_response(owned_job(existing, owner()), 202)
    data = load_body(schema)
    spec = resolve_model(data.get("model"))
    job_request = build(spec, data)
    record = jobs.submit(
        spec,
        job_request,
        owner=owner(),
        stream=bool(data.get("stream")),
        priority=data["priority"],
        expires_in=data.get("expires_in"),
        listed=True,
    )
    winner = remember(owner(), key, request.get_data(), record["id"])
    if winner != record["id"]:  # a concurrent request with the same key won
        record = owned_job(winner, owner())
    return _job_response(record, 202)


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
    record = owned_job(job_id, owner())
    return _job_response(long_poll(job_id, record, wait))


@blueprint.delete("/jobs/<job_id>")
@blueprint.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str):
    record = owned_job(job_id, owner())
    if request_cancel(jobs.store(), job_id, record["model"]) == ALREADY_ENDED and record["status"] != "cancelled":
        raise APIError(
            f"The job {job_id} already ended as {record['status']}; it cannot be cancelled.",
            status=409,
            code="job_already_ended",
        )
    return _job_response(owned_job(job_id, owner()))


@blueprint.get("/jobs/<job_id>/stream")
def stream_job(job_id: str):
    record = owned_job(job_id, owner())
    last_event_id = request.headers.get("Last-Event-ID", "0-0")
    if not EVENT_ID.fullmatch(last_event_id):
        raise InvalidRequest("Last-Event-ID must be an event id this stream sent.", param="Last-Event-ID")
    return sse_response(
        job_id,
        record["request"],
        abort_on_disconnect=False,
        last_event_id=last_event_id,
        replay_result=not record.get("stream"),
    )


@blueprint.get("/jobs")
def list_all():
    query = list_query.load(request.args)
    data, has_more = list_jobs(owner(), query["status"], query["limit"], query["after"])
    return jsonify(
        {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }
    )

"""OpenAI's Responses API: create (synchronous, streamed, or in the background), retrieve, cancel, delete.

A Responses request is translated once into the chat completions request it
means (tasks.protocol.responses) and takes chat's validation and job path:
the same job, the same per-model queue, the same worker. A background
response is a listed queue job (priority, expiry, cancel inside the engine,
exactly-once billing, owner isolation all come with it) answered at once as
`queued`; otherwise the call waits like a synchronous chat completion. The
response id is the job id (`resp_<hex>` is `job_<hex>`); the record's
`endpoint` (`responses`) and `meta` (the echoed parameters) say how to show it.
"""

from __future__ import annotations

from flask import jsonify
from marshmallow import ValidationError

from app import jobs
from app.api.common import WAIT_SLACK_SECONDS
from app.api.routing import GENERATION_ERRORS, PLAIN, SSE, Blueprint
from app.context import settings
from app.errors import validation_error
from app.job_requests import chat_request, resolve_model
from app.response_events import record_of, sse_response
from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.responses_api import (
    CreateResponseSchema,
    DeletedResponseSchema,
    ResponseObjectSchema,
    RetrieveQuerySchema,
)
from tasks.jobs import Job
from tasks.models import ModelSpec
from tasks.protocol.errors import APIError, InvalidRequest, NotFound
from tasks.protocol.requests import GenerationRequest
from tasks.protocol.response_objects import render
from tasks.protocol.responses import RESPONSES, ResponseParams, Translation, job_id, translate

blueprint = Blueprint(
    "responses", __name__, tag="Responses", prefixes=PLAIN, description="OpenAI's Responses API (background = queue)."
)
_chat_schema = ChatCompletionRequestSchema()
EVENTS_SCHEMA = {
    "type": "string",
    "description": "Responses events: `event: <type>` and `data: {event}` (with `type` and `sequence_number`).",
}
#: A DELETE of a running response cancels it and waits this long for its worker to stop, then deletes it.
DELETE_WAIT_SECONDS = 10.0


def _chat_request(spec: ModelSpec, translation: Translation) -> GenerationRequest:
    """Chat's own validation and request building; a refusal names the Responses parameter."""
    try:
        return chat_request(spec, _chat_schema.load(translation.chat))
    except ValidationError as exc:
        error = validation_error(exc)
    except APIError as exc:
        error = exc
    param = translation.param(error.param)
    message = error.message
    if error.param and message.startswith(f"{error.param}: "):
        message = f"{param}: {message.removeprefix(f'{error.param}: ')}"
    raise APIError(message, param=param, code=error.code, status=error.status, type=error.type) from None


def _owned(response_id: str) -> Job:
    """The caller's response; another key's, a deleted one or a chat job is the same 404."""
    missing = NotFound(f"No response with id {response_id}.", param="response_id", code="response_not_found")
    job_key = job_id(response_id)
    if job_key is None:
        raise missing
    try:
        job = jobs.service().owned(job_key, jobs.owner())
    except NotFound as exc:
        if exc.code == "job_expired":
            raise NotFound(f"The response {response_id} has expired from retention.", code="response_expired") from exc
        raise missing from exc
    if job.endpoint != RESPONSES or not ResponseParams.from_json(job.meta).store:
        raise missing
    return job


def _submit(spec: ModelSpec, data: dict, request: GenerationRequest, params: ResponseParams, **how) -> Job:
    return jobs.service().submit(
        owner=jobs.owner(),
        request=request,
        priority=data["priority"],
        listed=params.store,
        endpoint=RESPONSES,
        meta=params.to_json(),
        **how,
    )


@blueprint.post("/responses")
@blueprint.arguments(CreateResponseSchema)
@blueprint.response(200, ResponseObjectSchema)
@blueprint.alt_response(200, schema=EVENTS_SCHEMA, content_type=SSE, success=True)
@blueprint.errors(*GENERATION_ERRORS)
def create(data: dict):
    """Create a response: waits for it, streams it, or with `background: true` answers `queued` at once."""
    spec = resolve_model(data.get("model"))
    translation = translate(data)
    request = _chat_request(spec, translation)
    params = translation.params
    if data["background"]:
        job = _submit(spec, data, request, params, expires_in=data.get("expires_in"))
        if data["stream"]:
            return sse_response(job, synchronous=False)
        return jsonify(render(record_of(job)))
    jobs.wait_for_worker(spec)
    timeout = settings().sync_timeout_seconds
    job = _submit(spec, data, request, params, wait_seconds=timeout + WAIT_SLACK_SECONDS)
    if data["stream"]:
        return sse_response(job, synchronous=True, timeout=timeout)
    ended = jobs.wait_collected(job, timeout)
    if ended.status != "completed":
        raise jobs.error_of(ended)
    return jsonify(render(record_of(ended)))


@blueprint.get("/responses/<response_id>")
@blueprint.arguments(RetrieveQuerySchema, location="query")
@blueprint.response(200, ResponseObjectSchema)
@blueprint.alt_response(200, schema=EVENTS_SCHEMA, content_type=SSE, success=True)
@blueprint.errors(400, 401, 404, 429)
def retrieve(query: dict, response_id: str):
    """Retrieve a response; `stream=true` (re)plays its events, after `starting_after` when given."""
    job = _owned(response_id)
    if query["stream"]:
        return sse_response(job, synchronous=False, starting_after=query["starting_after"])
    return jsonify(render(record_of(job)))


@blueprint.post("/responses/<response_id>/cancel")
@blueprint.response(200, ResponseObjectSchema)
@blueprint.errors(400, 401, 404, 429)
def cancel(response_id: str):
    """Cancel a background response: a running one is aborted inside the engine (billed for what it made)."""
    job = _owned(response_id)
    if not ResponseParams.from_json(job.meta).background:
        raise InvalidRequest("Only responses created with background=true can be cancelled.", param="response_id")
    jobs.service().cancel(job)  # an ended one is left as it is, and answered as it is
    return jsonify(render(record_of(jobs.service().get(job.id) or job)))


@blueprint.delete("/responses/<response_id>")
@blueprint.response(200, DeletedResponseSchema)
@blueprint.errors(401, 404, 409, 429)
def delete(response_id: str):
    """Delete a stored response (cancelling it first if it is still queued or running)."""
    job = _owned(response_id)
    service = jobs.service()
    if not job.ended:
        service.cancel(job)
        jobs.wait_ended(job.id, DELETE_WAIT_SECONDS)
    if not service.delete(job):
        raise APIError(
            f"The response {response_id} is still stopping; retry the delete in a few seconds.",
            status=409,
            code="response_still_running",
        )
    return jsonify({"id": response_id, "object": "response.deleted", "deleted": True})

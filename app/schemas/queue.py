"""Batch submissions: the submit bodies (a completion body plus queue options) and the job object."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.completions import CompletionRequestSchema
from tasks.jobs import DEFAULT_PRIORITY, STATUSES


class QueueOptions:
    """Fields a batch submitter adds to an ordinary completion body."""

    expires_in = fields.Float(
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1, max=7 * 24 * 3600),
        metadata={"description": "Seconds the job may wait to start before it expires (never runs)."},
    )
    priority = fields.Integer(
        load_default=DEFAULT_PRIORITY,
        validate=validate.Range(min=0, max=9),
        metadata={"description": "0 runs first, 9 last (as LiteLLM's queue); default 5."},
    )


class QueueChatRequestSchema(ChatCompletionRequestSchema):
    expires_in = QueueOptions.expires_in
    priority = QueueOptions.priority


class QueueCompletionRequestSchema(CompletionRequestSchema):
    expires_in = QueueOptions.expires_in
    priority = QueueOptions.priority


class JobUrlsSchema(Schema):
    self = fields.String()
    cancel = fields.String()
    stream = fields.String()


class JobSchema(Schema):
    """What `GET /queue/jobs/<id>` returns; `result` is exactly the synchronous body."""

    id = fields.String()
    object = fields.Constant("queue.job")
    status = fields.String(validate=validate.OneOf(STATUSES))
    model = fields.String()
    endpoint = fields.String()
    priority = fields.Integer()
    created_at = fields.Integer()
    started_at = fields.Integer(allow_none=True)
    completed_at = fields.Integer(allow_none=True)
    expires_at = fields.Integer(allow_none=True)
    position = fields.Integer(allow_none=True)
    estimated_wait_seconds = fields.Float(allow_none=True)
    attempts = fields.Integer()
    urls = fields.Nested(JobUrlsSchema)
    result = fields.Dict(allow_none=True)
    error = fields.Dict(allow_none=True)
    usage = fields.Dict(allow_none=True)


class JobListQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(STATUSES), load_default=None)
    limit = fields.Integer(validate=validate.Range(min=1, max=100), load_default=20)
    after = fields.String(load_default=None)


class PollQuerySchema(Schema):
    wait = fields.Float(validate=validate.Range(min=0), load_default=0)


class JobListSchema(Schema):
    """The response of `GET /queue/jobs`: one page of the caller's jobs, newest first."""

    object = fields.Constant("list")
    data = fields.List(fields.Nested(JobSchema))
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()

"""The Batch API's bodies and objects, as OpenAI names them."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate, validates

from tasks.batches import ENDPOINTS, STATUSES

#: `24h` (OpenAI's only value) or any shorter window written the same way (`30m`, `90s`): an inferq extension.
WINDOW = re.compile(r"([1-9][0-9]{0,5})([smh])")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
MIN_WINDOW, MAX_WINDOW = 10, 24 * 3600
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512


def window_seconds(window: str) -> int:
    match = WINDOW.fullmatch(window)
    if match is None:
        raise ValidationError("must be 24h (or a shorter window such as 30m)")
    seconds = int(match[1]) * UNIT_SECONDS[match[2]]
    if not MIN_WINDOW <= seconds <= MAX_WINDOW:
        raise ValidationError(f"must be between {MIN_WINDOW}s and 24h")
    return seconds


class BatchCreateSchema(Schema):
    class Meta:
        unknown = EXCLUDE  # newer SDKs send options (output_expires_after) this server does not need

    input_file_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    endpoint = fields.String(required=True, validate=validate.OneOf(tuple(ENDPOINTS)))
    completion_window = fields.String(required=True)
    metadata = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True, load_default=None)

    @validates("completion_window")
    def _window(self, value: str, **kwargs: Any) -> None:
        window_seconds(value)

    @validates("metadata")
    def _metadata(self, value: dict[str, str] | None, **kwargs: Any) -> None:
        value = value or {}
        if len(value) > MAX_METADATA:
            raise ValidationError(f"at most {MAX_METADATA} pairs")
        if any(len(k) > MAX_METADATA_KEY or len(v) > MAX_METADATA_VALUE for k, v in value.items()):
            raise ValidationError(f"keys at most {MAX_METADATA_KEY} characters, values at most {MAX_METADATA_VALUE}")


class BatchErrorSchema(Schema):
    code = fields.String()
    message = fields.String()
    param = fields.String(allow_none=True)
    line = fields.Integer(allow_none=True)


class BatchErrorsSchema(Schema):
    object = fields.Constant("list")
    data = fields.List(fields.Nested(BatchErrorSchema))


class RequestCountsSchema(Schema):
    total = fields.Integer()
    completed = fields.Integer()
    failed = fields.Integer()


class BatchSchema(Schema):
    id = fields.String()
    object = fields.Constant("batch")
    endpoint = fields.String()
    model = fields.String(allow_none=True)
    errors = fields.Nested(BatchErrorsSchema, allow_none=True)
    input_file_id = fields.String()
    completion_window = fields.String()
    status = fields.String(validate=validate.OneOf(STATUSES))
    output_file_id = fields.String(allow_none=True)
    error_file_id = fields.String(allow_none=True)
    created_at = fields.Integer()
    expires_at = fields.Integer(allow_none=True)
    in_progress_at = fields.Integer(allow_none=True)
    finalizing_at = fields.Integer(allow_none=True)
    completed_at = fields.Integer(allow_none=True)
    failed_at = fields.Integer(allow_none=True)
    expired_at = fields.Integer(allow_none=True)
    cancelling_at = fields.Integer(allow_none=True)
    cancelled_at = fields.Integer(allow_none=True)
    request_counts = fields.Nested(RequestCountsSchema)
    metadata = fields.Dict(allow_none=True)
    usage = fields.Dict(allow_none=True)


class BatchListSchema(Schema):
    object = fields.Constant("list")
    data = fields.List(fields.Nested(BatchSchema))
    first_id = fields.String(allow_none=True)
    last_id = fields.String(allow_none=True)
    has_more = fields.Boolean()


class BatchListQuerySchema(Schema):
    after = fields.String(load_default=None)
    limit = fields.Integer(validate=validate.Range(min=1, max=100), load_default=20)

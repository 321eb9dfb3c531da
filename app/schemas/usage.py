"""`GET /v1/usage`: the query (`start`, `end`) and the reply (tokens and cost per model)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_load

#: Longest range one query may cover (one Redis hash per day is read).
MAX_DAYS = 366
#: Without `start`, the last this-many days up to `end` (today included).
DEFAULT_DAYS = 30


class UsageQuerySchema(Schema):
    start = fields.Date(load_default=None)
    end = fields.Date(load_default=None)

    @post_load
    def _range(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        end = data["end"] or dt.datetime.now(dt.timezone.utc).date()
        start = data["start"] or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise ValidationError("start must not be after end", "start")
        if (end - start).days >= MAX_DAYS:
            raise ValidationError(f"the range may cover at most {MAX_DAYS} days", "start")
        return {"start": start, "end": end}


class CostSchema(Schema):
    prompt = fields.Float()
    completion = fields.Float()
    total = fields.Float()


class ModelUsageSchema(Schema):
    model = fields.String()
    requests = fields.Integer()
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()
    cost = fields.Nested(CostSchema)


class UsageSchema(Schema):
    object = fields.Constant("usage")
    key_id = fields.String()
    start = fields.Date()
    end = fields.Date()
    currency = fields.Constant("usd")
    data = fields.List(fields.Nested(ModelUsageSchema))
    total = fields.Nested(ModelUsageSchema(exclude=("model",)))


class TokenUsageSchema(Schema):
    """The `usage` object of a completion or embedding response."""

    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()

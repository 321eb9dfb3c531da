"""What a chat and a text completion response share; each adds its `object` and its choices."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from app.schemas.usage import TokenUsageSchema


class ChoiceBaseSchema(Schema):
    index = fields.Integer()
    logprobs = fields.Dict(allow_none=True)
    finish_reason = fields.String(allow_none=True, validate=validate.OneOf(("stop", "length")))


class CompletionBaseSchema(Schema):
    id = fields.String()
    created = fields.Integer()
    model = fields.String()
    usage = fields.Nested(TokenUsageSchema)

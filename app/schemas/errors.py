"""The error envelope every failure is answered with (see app.errors)."""

from __future__ import annotations

from marshmallow import Schema, fields


class ErrorDetailSchema(Schema):
    message = fields.String(required=True)
    type = fields.String(required=True)
    param = fields.String(allow_none=True)
    code = fields.String(allow_none=True)


class ErrorSchema(Schema):
    """`{"error": {"message", "type", "param", "code"}}`, as OpenAI's SDKs parse it."""

    error = fields.Nested(ErrorDetailSchema, required=True)

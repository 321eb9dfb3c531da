"""`POST /utils/token_counter` request body (LiteLLM's shape)."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.schemas.chat import MessageSchema


class TokenCounterRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    model = fields.String(required=True, validate=validate.Length(min=1, max=256))
    prompt = fields.String(allow_none=True, load_default=None)
    messages = fields.List(
        fields.Nested(MessageSchema), allow_none=True, load_default=None, validate=validate.Length(min=1)
    )
    add_generation_prompt = fields.Boolean(load_default=True)

    @validates_schema
    def _one_of(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("prompt") is None and data.get("messages") is None:
            raise ValidationError("provide either prompt or messages", "prompt")
        if data.get("prompt") is not None and data.get("messages") is not None:
            raise ValidationError("provide prompt or messages, not both", "messages")


class TokenCounterSchema(Schema):
    """The response of `POST /utils/token_counter`."""

    total_tokens = fields.Integer()
    request_model = fields.String()
    model_used = fields.String()
    tokenizer_type = fields.String()

"""`POST /chat/completions` request body."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.schemas.fields import MessageContent
from app.schemas.responses import ChoiceBaseSchema, CompletionBaseSchema
from app.schemas.sampling import CHAT, SamplingSchema, ignored_vllm_fields

ROLES = ("system", "developer", "user", "assistant")


class MessageSchema(Schema):
    class Meta:
        unknown = RAISE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    content = MessageContent(required=True, allow_none=False)
    name = fields.String()


class ChatCompletionRequestSchema(SamplingSchema, ignored_vllm_fields(CHAT)):
    messages = fields.List(fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1))
    logprobs = fields.Boolean(allow_none=True, load_default=False)
    top_logprobs = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=0, max=20))
    max_completion_tokens = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1))
    add_generation_prompt = fields.Boolean(load_default=True)

    @validates_schema
    def _check_logprobs(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("top_logprobs") is not None and not data.get("logprobs"):
            raise ValidationError("top_logprobs requires logprobs to be true", "top_logprobs")
        if data.get("max_completion_tokens") is not None and data.get("max_tokens") is not None:
            raise ValidationError("set max_tokens or max_completion_tokens, not both", "max_completion_tokens")


class ChatMessageSchema(Schema):
    role = fields.Constant("assistant")
    content = fields.String(allow_none=True)
    refusal = fields.String(allow_none=True)


class ChatChoiceSchema(ChoiceBaseSchema):
    message = fields.Nested(ChatMessageSchema)


class ChatCompletionSchema(CompletionBaseSchema):
    """The `chat.completion` response (with `stream: true`, `chat.completion.chunk` events over SSE instead)."""

    object = fields.Constant("chat.completion")
    choices = fields.List(fields.Nested(ChatChoiceSchema))

"""`POST /chat/completions` request body."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.schemas.fields import MessageContent
from app.schemas.responses import ChoiceBaseSchema, CompletionBaseSchema
from app.schemas.sampling import CHAT, SamplingSchema, ignored_vllm_fields
from app.schemas.tools import (
    MAX_TOOLS,
    MessageToolCallSchema,
    OpenAIChatFields,
    ResponseFormatSchema,
    ToolChoice,
    ToolSchema,
    check_tools,
)

ROLES = ("system", "developer", "user", "assistant", "tool")


class MessageSchema(Schema):
    class Meta:
        unknown = RAISE

    role = fields.String(required=True, validate=validate.OneOf(ROLES))
    #: Null only in an assistant message that made tool calls.
    content = MessageContent(allow_none=True, load_default=None)
    name = fields.String()
    tool_calls = fields.List(fields.Nested(MessageToolCallSchema), allow_none=True)
    tool_call_id = fields.String()
    # What the SDKs echo back from an earlier answer: accepted, not rendered.
    refusal = fields.String(allow_none=True, metadata={"ignored": "a refusal is not rendered"})
    annotations = fields.List(fields.Dict(), allow_none=True, metadata={"ignored": "no annotations are produced"})
    audio = fields.Raw(allow_none=True, validate=validate.Equal(None), metadata={"ignored": "text-only models"})
    function_call = fields.Raw(allow_none=True, validate=validate.Equal(None), metadata={"ignored": "use tool_calls"})

    @validates_schema
    def _check_roles(self, data: dict[str, Any], **kwargs: Any) -> None:
        role = data["role"]
        if data.get("tool_calls") and role != "assistant":
            raise ValidationError("only assistant messages carry tool_calls", "tool_calls")
        if "tool_call_id" in data and role != "tool":
            raise ValidationError("only tool messages carry tool_call_id", "tool_call_id")
        if role == "tool" and "tool_call_id" not in data:
            raise ValidationError("a tool message needs the tool_call_id it answers", "tool_call_id")
        if data.get("content") is None and not (role == "assistant" and data.get("tool_calls")):
            raise ValidationError("Missing data for required field.", "content")


class ChatCompletionRequestSchema(SamplingSchema, ignored_vllm_fields(CHAT), OpenAIChatFields):
    messages = fields.List(fields.Nested(MessageSchema), required=True, validate=validate.Length(min=1))
    logprobs = fields.Boolean(allow_none=True, load_default=False)
    top_logprobs = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=0, max=20))
    max_completion_tokens = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1))
    add_generation_prompt = fields.Boolean(load_default=True)
    response_format = fields.Nested(ResponseFormatSchema, allow_none=True)
    tools = fields.List(
        fields.Nested(ToolSchema),
        allow_none=True,
        validate=validate.Length(max=MAX_TOOLS, error=f"at most {MAX_TOOLS} tools"),
    )
    tool_choice = ToolChoice(allow_none=True)

    @validates_schema
    def _check_logprobs(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("top_logprobs") is not None and not data.get("logprobs"):
            raise ValidationError("top_logprobs requires logprobs to be true", "top_logprobs")
        if data.get("max_completion_tokens") is not None and data.get("max_tokens") is not None:
            raise ValidationError("set max_tokens or max_completion_tokens, not both", "max_completion_tokens")
        check_tools(data)


class ResponseToolCallSchema(Schema):
    id = fields.String()
    type = fields.Constant("function")
    function = fields.Dict(metadata={"description": "`name`, and `arguments` as a JSON string"})


class ChatMessageSchema(Schema):
    role = fields.Constant("assistant")
    content = fields.String(allow_none=True)
    refusal = fields.String(allow_none=True)
    tool_calls = fields.List(fields.Nested(ResponseToolCallSchema))


class ChatChoiceSchema(ChoiceBaseSchema):
    message = fields.Nested(ChatMessageSchema)


class ChatCompletionSchema(CompletionBaseSchema):
    """The `chat.completion` response (with `stream: true`, `chat.completion.chunk` events over SSE instead)."""

    object = fields.Constant("chat.completion")
    choices = fields.List(fields.Nested(ChatChoiceSchema))

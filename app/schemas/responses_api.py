"""The Responses API (`/v1/responses`): the create body, the retrieve query and the Response object.

(`app/schemas/responses.py` holds what chat and text completion responses
share; this module is OpenAI's newer Responses resource.)

Unknown-field policy, as on every route: a field OpenAI defines that does not
apply here is accepted and echoed or ignored (`store`, `metadata`, `user`,
`service_tier`, `truncation`, `reasoning`, `include`, `prompt_cache_key`,
`safety_identifier`, `max_tool_calls`, `stream_options`); one that would
change the answer in a way inferq cannot honour is a 400 naming it
(`previous_response_id`, `conversation`, `prompt`, `top_logprobs` above 0);
anything else is a 400 naming the field. Sampling extensions that chat
accepts (`seed`, `stop`, `top_k`, ...) pass through and are validated by the
chat schema; `priority` and `expires_in` are the queue's.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.schemas.queue import QueueOptions

#: OpenAI's metadata limits: 16 pairs, keys of 64 characters, values of 512.
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512
FORMAT_TYPES = ("text", "json_object", "json_schema")
#: Stateful or server-side features that would change the answer: refused by name.
UNSUPPORTED = {
    "previous_response_id": "stateful conversations are not supported; send the whole conversation in `input`",
    "conversation": "stateful conversations are not supported; send the whole conversation in `input`",
    "prompt": "stored prompt templates are not supported; send the text in `instructions` and `input`",
}


def _input(value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list) or not value:
        raise ValidationError("must be a string or a non-empty list of input items")


def _metadata(value: dict) -> None:
    if len(value) > MAX_METADATA:
        raise ValidationError(f"at most {MAX_METADATA} key-value pairs")
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY or not isinstance(item, str) or len(item) > MAX_METADATA_VALUE:
            raise ValidationError(f"keys are strings of at most {MAX_METADATA_KEY} characters, values of 512")


def _format(value: dict) -> None:
    kind = value.get("type")
    if kind not in FORMAT_TYPES:
        raise ValidationError(f"type must be one of {', '.join(FORMAT_TYPES)}")
    if kind == "json_schema":
        if not isinstance(value.get("name"), str) or not value["name"]:
            raise ValidationError("a json_schema format needs a name")
        if not isinstance(value.get("schema"), dict):
            raise ValidationError("a json_schema format needs a schema (a JSON Schema object)")


def _tool_choice(value: Any) -> None:
    if value in ("none", "auto", "required"):
        return
    if isinstance(value, dict) and value.get("type") == "function" and isinstance(value.get("name"), str):
        return
    raise ValidationError('must be "none", "auto", "required" or {"type": "function", "name": ...}')


class TextSchema(Schema):
    class Meta:
        unknown = RAISE

    format = fields.Dict(allow_none=True, validate=_format)
    verbosity = fields.String(allow_none=True, validate=validate.OneOf(("low", "medium", "high")))


def _extension() -> fields.Field:
    return fields.Raw(allow_none=True, metadata={"description": "A chat sampling extension; see chat completions."})


class CreateResponseSchema(Schema):
    """`POST /v1/responses`: OpenAI's create body (text in, text or function calls out)."""

    class Meta:
        unknown = RAISE

    model = fields.String(validate=validate.Length(min=1, max=256))
    input = fields.Raw(required=True, validate=_input, metadata={"description": "A string, or input items."})
    instructions = fields.String(allow_none=True)
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    max_output_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    text = fields.Nested(TextSchema, allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)
    tool_choice = fields.Raw(allow_none=True, validate=_tool_choice)
    parallel_tool_calls = fields.Boolean(allow_none=True)
    stream = fields.Boolean(load_default=False)
    background = fields.Boolean(load_default=False)
    store = fields.Boolean(allow_none=True)
    metadata = fields.Dict(keys=fields.String(), allow_none=True, validate=_metadata)
    user = fields.String(allow_none=True)
    service_tier = fields.String(allow_none=True)
    truncation = fields.String(allow_none=True, validate=validate.OneOf(("auto", "disabled")))
    top_logprobs = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=20))
    # Accepted and ignored: they change nothing a served model does.
    reasoning = fields.Dict(allow_none=True)
    include = fields.List(fields.String(), allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    prompt_cache_key = fields.String(allow_none=True)
    prompt_cache_retention = fields.String(allow_none=True)
    safety_identifier = fields.String(allow_none=True)
    max_tool_calls = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    # Refused when set (UNSUPPORTED says why).
    previous_response_id = fields.String(allow_none=True)
    conversation = fields.Raw(allow_none=True)
    prompt = fields.Raw(allow_none=True)
    # The queue's options (background responses are queue jobs).
    priority = QueueOptions.priority
    expires_in = QueueOptions.expires_in

    # inferq's chat sampling extensions (tasks.protocol.responses.SAMPLING_EXTENSIONS), checked by chat's schema.
    seed = _extension()
    stop = _extension()
    top_k = _extension()
    min_p = _extension()
    presence_penalty = _extension()
    frequency_penalty = _extension()
    repetition_penalty = _extension()
    logit_bias = _extension()
    min_tokens = _extension()
    ignore_eos = _extension()
    stop_token_ids = _extension()

    @validates_schema
    def _check(self, data: dict[str, Any], **kwargs: Any) -> None:
        for name, why in UNSUPPORTED.items():
            if data.get(name) is not None:
                raise ValidationError(f"{name} is not supported: {why}", name)
        if data.get("top_logprobs"):
            raise ValidationError(
                "top_logprobs is not supported on responses (chat completions return them)", "top_logprobs"
            )
        if data.get("background") and data.get("store") is False:
            raise ValidationError("background responses must be stored: store=false cannot be used with it", "store")
        if data.get("expires_in") is not None and not data.get("background"):
            raise ValidationError("expires_in applies to background responses only", "expires_in")


class RetrieveQuerySchema(Schema):
    """`GET /v1/responses/{id}`: `stream=true` replays the events, after `starting_after`."""

    class Meta:
        unknown = RAISE

    stream = fields.Boolean(load_default=False)
    starting_after = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=0))
    include = fields.List(fields.String(), load_default=None)
    include_obfuscation = fields.Boolean(load_default=None)


class ResponseUsageSchema(Schema):
    input_tokens = fields.Integer()
    input_tokens_details = fields.Dict()
    output_tokens = fields.Integer()
    output_tokens_details = fields.Dict()
    total_tokens = fields.Integer()


class ResponseObjectSchema(Schema):
    """OpenAI's Response object (`stream: true` sends Responses events over SSE instead)."""

    id = fields.String()
    object = fields.Constant("response")
    created_at = fields.Integer()
    status = fields.String(
        validate=validate.OneOf(("queued", "in_progress", "completed", "failed", "cancelled", "incomplete"))
    )
    background = fields.Boolean()
    completed_at = fields.Integer(allow_none=True)
    error = fields.Dict(allow_none=True)
    incomplete_details = fields.Dict(allow_none=True)
    instructions = fields.String(allow_none=True)
    max_output_tokens = fields.Integer(allow_none=True)
    model = fields.String()
    output = fields.List(fields.Dict())
    parallel_tool_calls = fields.Boolean()
    temperature = fields.Float(allow_none=True)
    text = fields.Dict()
    tool_choice = fields.Raw()
    tools = fields.List(fields.Dict())
    top_p = fields.Float(allow_none=True)
    usage = fields.Nested(ResponseUsageSchema, allow_none=True)
    metadata = fields.Dict(allow_none=True)


class DeletedResponseSchema(Schema):
    id = fields.String()
    object = fields.Constant("response.deleted")
    deleted = fields.Boolean()

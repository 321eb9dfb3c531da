"""`response_format`, `tools` and `tool_choice`, and the OpenAI fields inferq accepts without acting on.

Every JSON schema a body carries (`response_format.json_schema.schema`, a
function's `parameters`) is checked here by the engine's own grammar library
(workers.structured), so a schema the engine could not constrain to is a 400
naming it, at submit, never a failed job.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from workers.structured import InvalidSchema, check_schema

#: OpenAI's rule for function and response-format names.
NAME = validate.Regexp(r"^[a-zA-Z0-9_-]{1,64}$", error="must be 1-64 letters, digits, underscores or dashes")
#: OpenAI accepts at most 128 tools per request.
MAX_TOOLS = 128
TOOL_CHOICES = ("none", "auto", "required")


def json_schema(value: Any) -> None:
    """A JSON schema the engine can decode against, else a 400 saying why."""
    try:
        check_schema(value)
    except InvalidSchema as exc:
        raise ValidationError(f"invalid JSON schema: {exc}") from exc


class _Strict(Schema):
    class Meta:
        unknown = RAISE


class JsonSchemaFormatSchema(_Strict):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(allow_none=True)
    schema = fields.Dict(load_default=dict, validate=json_schema)
    #: Honoured in effect: every schema is enforced by the grammar, strict or not.
    strict = fields.Boolean(allow_none=True)


class ResponseFormatSchema(_Strict):
    type = fields.String(required=True, validate=validate.OneOf(("text", "json_object", "json_schema")))
    json_schema = fields.Nested(JsonSchemaFormatSchema)

    @validates_schema
    def _schema_with_its_type(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data["type"] == "json_schema" and "json_schema" not in data:
            raise ValidationError("json_schema is required when type is json_schema", "json_schema")
        if data["type"] != "json_schema" and "json_schema" in data:
            raise ValidationError("json_schema is only allowed when type is json_schema", "json_schema")


class FunctionSchema(_Strict):
    name = fields.String(required=True, validate=NAME)
    description = fields.String(allow_none=True)
    parameters = fields.Dict(allow_none=True, validate=json_schema)
    strict = fields.Boolean(allow_none=True)


class ToolSchema(_Strict):
    type = fields.String(required=True, validate=validate.OneOf(("function",), error="only function tools are offered"))
    function = fields.Nested(FunctionSchema, required=True)


class ToolChoice(fields.Field):
    """`none`, `auto`, `required`, or `{"type": "function", "function": {"name": ...}}` (kept as sent)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | dict[str, Any]:
        if isinstance(value, str):
            if value not in TOOL_CHOICES:
                raise ValidationError(f"must be one of {', '.join(TOOL_CHOICES)} or a named function")
            return value
        function = value.get("function") if isinstance(value, dict) else None
        if (
            isinstance(value, dict)
            and value.get("type") == "function"
            and set(value) == {"type", "function"}
            and isinstance(function, dict)
            and set(function) == {"name"}
            and isinstance(function["name"], str)
        ):
            return value
        raise ValidationError('must be one of none, auto, required or {"type": "function", "function": {"name": ...}}')


class CalledFunctionSchema(_Strict):
    name = fields.String(required=True)
    arguments = fields.String(required=True)


class MessageToolCallSchema(_Strict):
    """A call in an assistant message of the history, as the model's earlier answer gave it."""

    id = fields.String(required=True)
    type = fields.String(load_default="function", validate=validate.OneOf(("function",)))
    function = fields.Nested(CalledFunctionSchema, required=True)


def check_tools(data: dict[str, Any]) -> None:
    """What OpenAI refuses about tools in one body: a choice without tools, an unknown or repeated name."""
    tools, choice = data.get("tools") or [], data.get("tool_choice")
    names = [tool["function"]["name"] for tool in tools]
    if len(set(names)) != len(names):
        raise ValidationError("function names must be unique", "tools")
    if choice not in (None, "none") and not tools:
        raise ValidationError("tool_choice is only allowed when tools are specified", "tool_choice")
    if isinstance(choice, dict) and choice["function"]["name"] not in names:
        raise ValidationError(f"no function named `{choice['function']['name']}` in tools", "tool_choice")
    forced = choice == "required" or isinstance(choice, dict)
    if forced and (data.get("response_format") or {}).get("type") in ("json_object", "json_schema"):
        raise ValidationError("a forced tool_choice and a JSON response_format cannot apply at once", "response_format")


class Refused(fields.Raw):
    """An OpenAI field inferq cannot honour and must not silently drop: a 400 saying why (null is fine)."""

    def __init__(self, reason: str, **kwargs: Any) -> None:
        super().__init__(allow_none=True, metadata={"ignored": reason, "description": reason}, **kwargs)
        self.reason = reason

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        raise ValidationError(self.reason)


def _ignored(field: type[fields.Field], reason: str, **kwargs: Any) -> fields.Field:
    metadata = {"ignored": reason, "description": f"Accepted and ignored: {reason}."}
    return field(allow_none=True, metadata=metadata, **kwargs)


class OpenAIChatFields(Schema):
    """Chat fields OpenAI defines that change nothing here (accepted, checked, dropped) or that cannot be honoured.

    The unknown-fields policy (README): these are accepted or refused by name;
    any field neither OpenAI nor vLLM defines is a 400 naming it.
    """

    safety_identifier = _ignored(fields.String, "no abuse monitoring keyed on end users")
    prompt_cache_key = _ignored(fields.String, "prefix caching is off on these engines")
    prompt_cache_retention = _ignored(fields.String, "prefix caching is off on these engines")
    verbosity = _ignored(fields.String, "the served models take no verbosity control")
    prediction = _ignored(fields.Dict, "predicted outputs only speed generation up; none is done")
    modalities = _ignored(
        fields.List,
        "text is the only output",
        cls_or_instance=fields.String(validate=validate.OneOf(("text",), error="only text output is offered")),
    )
    audio = Refused("audio output is not offered: the served models are text-only")
    web_search_options = Refused("web search is not offered")
    functions = Refused("`functions` is deprecated and not offered: send `tools`")
    function_call = Refused("`function_call` is deprecated and not offered: send `tool_choice`")

"""OpenAI's Responses API as a view over chat completions: the request translated once, the result rendered.

A Responses request becomes the chat completions body it means (`input` and
`instructions` -> `messages`, `max_output_tokens` -> `max_tokens`,
`text.format` -> `response_format`, flat function `tools` -> chat's nested
ones), which then takes the chat route's validation and job path unchanged:
the worker runs a chat job and stores a chat body. What a Response object
echoes and chat does not carry (`instructions`, `metadata`, the tools as the
caller wrote them...) travels beside the request as `ResponseParams`, kept in
the job record's `meta`; the record's `endpoint` is `responses`.

`render` turns that record (status, the chat body, usage) into OpenAI's
Response object. Ids are derived, not stored: `resp_<hex>` is the job
`job_<hex>`, its message item `msg_<hex>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from tasks.protocol.errors import InvalidRequest

RESPONSES = "responses"
JOB_PREFIX, RESPONSE_PREFIX = "job_", "resp_"

#: Sampling extensions a Responses body may carry beyond OpenAI's (inferq's chat parameters, same meaning).
SAMPLING_EXTENSIONS = (
    "seed",
    "stop",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "min_tokens",
    "ignore_eos",
    "stop_token_ids",
)
#: Responses parameters copied to chat under the same name.
SAME_NAME = ("model", "temperature", "top_p", "user", "parallel_tool_calls", "stream")


def response_id(job_id: str) -> str:
    return RESPONSE_PREFIX + job_id.removeprefix(JOB_PREFIX)


def job_id(resp_id: str) -> str | None:
    """The job behind a response id; None for an id that is not one of ours."""
    if not resp_id.startswith(RESPONSE_PREFIX):
        return None
    return JOB_PREFIX + resp_id.removeprefix(RESPONSE_PREFIX)


def message_id(job_id_: str) -> str:
    return "msg_" + job_id_.removeprefix(JOB_PREFIX)


def call_item_id(job_id_: str, index: int) -> str:
    return f"fc_{job_id_.removeprefix(JOB_PREFIX)}_{index}"


@dataclass(frozen=True)
class ResponseParams:
    """What a Response object echoes of its request, with OpenAI's defaults where the caller sent none."""

    instructions: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: str | dict[str, Any] = "auto"
    parallel_tool_calls: bool = True
    text: dict[str, Any] = field(default_factory=lambda: {"format": {"type": "text"}})
    temperature: float = 1.0
    top_p: float = 1.0
    max_output_tokens: int | None = None
    background: bool = False
    store: bool = True
    user: str | None = None
    service_tier: str = "default"
    truncation: str = "disabled"
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ResponseParams:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in (data or {}).items() if key in known})

    @classmethod
    def of(cls, body: dict[str, Any]) -> ResponseParams:
        """From a loaded Responses body: what it set, OpenAI's defaults for the rest (None means default)."""
        known = {f.name for f in fields(cls)}
        given = {key: value for key, value in body.items() if key in known and value is not None}
        if "text" in given:
            given["text"] = {"format": {"type": "text"}, **given["text"]}
        return cls(**given)


@dataclass
class Translation:
    """The chat body a Responses body means, and where each chat message came from (to name errors)."""

    chat: dict[str, Any]
    params: ResponseParams
    #: messages[i] of the chat body came from this Responses parameter (`instructions`, `input[3]`).
    origins: list[str]

    def param(self, chat_param: str | None) -> str | None:
        """A chat body's param path, named as the caller wrote it."""
        if not chat_param:
            return chat_param
        if chat_param.startswith("messages["):
            index = int(chat_param[len("messages[") : chat_param.index("]")])
            return self.origins[index] if index < len(self.origins) else "input"
        head = chat_param.split(".", 1)[0].split("[", 1)[0]
        renamed = {"messages": "input", "max_tokens": "max_output_tokens", "response_format": "text.format"}
        return renamed.get(head, chat_param)


def _text_of(content: Any, param: str, part_types: tuple[str, ...]) -> str:
    """A message's content as text: a string, or text parts (images, files and audio are not served)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{param} must be a string or a list of content parts.", param=param)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in part_types or not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"{param}[{j}]: content parts of type {', '.join(part_types)} are supported "
                f"(these models read text only), not {kind!r}.",
                param=f"{param}[{j}]",
                code="unsupported_content",
            )
        texts.append(part["text"])
    return "".join(texts)


def _message(item: dict[str, Any], param: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"{param}.role must be user, assistant, system or developer.", param=f"{param}.role")
    parts = ("output_text",) if role == "assistant" else ("input_text",)
    return {"role": role, "content": _text_of(item.get("content"), f"{param}.content", (*parts, "text"))}


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    for name in ("call_id", "name", "arguments"):
        if not isinstance(item.get(name), str):
            raise InvalidRequest(f"{param}.{name} must be a string.", param=f"{param}.{name}")
    return {
        "id": item["call_id"],
        "type": "function",
        "function": {"name": item["name"], "arguments": item["arguments"]},
    }


def _add_item(messages: list[dict[str, Any]], item: Any, param: str) -> bool:
    """Append one input item's chat message; False when it joined the previous one (parallel calls)."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"{param} must be an object.", param=param)
    kind = item.get("type", "message")
    if kind == "message":
        messages.append(_message(item, param))
    elif kind == "function_call":
        call, last = _function_call(item, param), messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" in last:
            last["tool_calls"].append(call)  # parallel calls of one turn: one assistant message
            return False
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        if not isinstance(item.get("call_id"), str):
            raise InvalidRequest(f"{param}.call_id must be a string.", param=f"{param}.call_id")
        output = _text_of(item.get("output"), f"{param}.output", ("input_text", "output_text", "text"))
        messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
    else:
        raise InvalidRequest(
            f"{param}: input items of type {kind!r} are not supported; send message, function_call "
            "and function_call_output items.",
            param=f"{param}.type",
            code="unsupported_input_item",
        )
    return True


def _messages(input_: str | list[Any], instructions: str | None) -> tuple[list[dict[str, Any]], list[str]]:
    """Chat messages for `instructions` + `input`, and the parameter each one came from."""
    messages: list[dict[str, Any]] = []
    origins: list[str] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
        origins.append("instructions")
    if isinstance(input_, str):
        return [*messages, {"role": "user", "content": input_}], [*origins, "input"]
    for i, item in enumerate(input_):
        if _add_item(messages, item, f"input[{i}]"):
            origins.append(f"input[{i}]")
    return messages, origins


def _response_format(text: dict[str, Any] | None) -> dict[str, Any] | None:
    """`text.format` in chat's `response_format` shape (Responses flattens the json_schema object)."""
    fmt = (text or {}).get("format")
    if not fmt or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_schema":
        inner = {key: fmt[key] for key in ("name", "schema", "strict", "description") if key in fmt}
        return {"type": "json_schema", "json_schema": inner}
    return dict(fmt)


def _chat_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chat = []
    for i, tool in enumerate(tools):
        if tool.get("type") != "function":
            raise InvalidRequest(
                f"tools[{i}]: only tools of type function are supported (no hosted tools run here), "
                f"not {tool.get('type')!r}.",
                param=f"tools[{i}].type",
                code="unsupported_tool",
            )
        function = {key: tool[key] for key in ("name", "description", "parameters", "strict") if key in tool}
        chat.append({"type": "function", "function": function})
    return chat


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(
        'tool_choice must be "none", "auto", "required" or {"type": "function", "name": ...}.',
        param="tool_choice",
    )


def translate(body: dict[str, Any]) -> Translation:
    """The chat completions body a loaded Responses body means (validated by the chat schema next)."""
    messages, origins = _messages(body["input"], body.get("instructions"))
    chat: dict[str, Any] = {key: body[key] for key in SAME_NAME if body.get(key) is not None}
    chat["messages"] = messages
    chat.update({key: body[key] for key in SAMPLING_EXTENSIONS if key in body})
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if body.get("tools"):
        chat["tools"] = _chat_tools(body["tools"])
        # Tool calls are parsed from the whole answer: the job runs unstreamed, and a
        # Responses stream sends its items once it ends (app.response_events).
        chat["stream"] = False
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _chat_tool_choice(body["tool_choice"])
    return Translation(chat, ResponseParams.of(body), origins)

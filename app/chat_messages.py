"""The conversation as a chat template receives it: tool definitions, tool calls and tool results included.

A template that knows tools (it mentions them: Llama 3.1, Qwen, Mistral, ...)
gets them as transformers and vLLM pass them: `tools` as a template variable,
assistant `tool_calls` with their arguments parsed back into objects, `tool`
messages with their `tool_call_id`. A template that does not (SmolLM2's
ChatML renders only `role` and `content`) would drop them or fail on a null
content, so inferq writes them as text in the Hermes convention the `hermes`
tool-call parser reads: the functions in the system message inside `<tools>`,
each earlier call as `<tool_call>{"name", "arguments"}</tool_call>`, each
result as a user turn inside `<tool_response>`.
"""

from __future__ import annotations

import json
from typing import Any

HERMES_TOOLS = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{tools}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{{"name": <function-name>, "arguments": <args-json-object>}}\n</tool_call>'
)


def _arguments(text: str) -> Any:
    """Templates index into arguments (`tool_call.arguments | tojson`): an object where the text is one."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, dict) else text


def _message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message["role"], "content": message.get("content")}
    for key in ("name", "tool_call_id"):
        if key in message:
            out[key] = message[key]
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": _arguments(call["function"]["arguments"])},
            }
            for call in message["tool_calls"]
        ]
    return out


def _as_text(message: dict[str, Any]) -> dict[str, Any]:
    """One message in the Hermes text convention, for a template that renders only role and content."""
    if message["role"] == "tool":
        return {"role": "user", "content": f"<tool_response>\n{message['content']}\n</tool_response>"}
    calls = message.get("tool_calls")
    if not calls:
        return {key: value for key, value in message.items() if key in ("role", "content", "name")}
    written = [message["content"]] if message.get("content") else []
    for call in calls:
        body = json.dumps({"name": call["function"]["name"], "arguments": call["function"]["arguments"]})
        written.append(f"<tool_call>\n{body}\n</tool_call>")
    return {"role": "assistant", "content": "\n".join(written)}


def _with_tools_in_system(messages: list[dict[str, Any]], tools: list[dict[str, Any]], system_ok: bool) -> list:
    block = HERMES_TOOLS.format(tools="\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools))
    first = messages[0]
    if first["role"] in ("system", "developer"):
        return [{**first, "content": f"{first['content']}\n\n{block}"}, *messages[1:]]
    if system_ok:
        return [{"role": "system", "content": block}, *messages]
    return [{**first, "content": f"{block}\n\n{first['content']}"}, *messages[1:]]


def template_messages(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None,
    *,
    knows_tools: bool,
    system_ok: bool,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """(messages, tools) for the template; `tools` is None where they were written into the messages."""
    converted = [_message(message) for message in messages]
    if knows_tools:
        return converted, tools or None
    as_text = [_as_text(message) for message in converted]
    return (_with_tools_in_system(as_text, tools, system_ok) if tools else as_text), None

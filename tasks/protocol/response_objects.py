"""OpenAI's Response object, rendered from a Responses job's record (see tasks.protocol.responses).

The worker stored a chat completion body; the Response object is a view of it
plus the job's status, usage and the request's echoed parameters. Shapes and
field order follow what OpenAI sends (and the openai SDK's `Response` type):
every field present, null where there is nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.protocol.responses import ResponseParams, call_item_id, message_id, response_id

#: Job status -> Response status. `expired` (never started within expires_in) is a failure with its reason.
STATUSES = {
    "queued": "queued",
    "in_progress": "in_progress",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
    "expired": "failed",
}

#: The error codes OpenAI's Response object may carry that can happen here.
ERROR_CODES = ("server_error", "rate_limit_exceeded", "invalid_prompt")


@dataclass(frozen=True)
class ResponseRecord:
    """What a Response object is rendered from: one job record of endpoint `responses`."""

    job_id: str
    model: str
    status: str
    created_at: float
    params: ResponseParams
    completed_at: float | None = None
    #: The chat completion body the worker stored (completed jobs).
    result: dict[str, Any] | None = None
    #: The OpenAI error body the worker stored (failed jobs).
    error: dict[str, Any] | None = None
    usage: dict[str, int] | None = None

    @property
    def finish_reason(self) -> str | None:
        choices = (self.result or {}).get("choices") or [{}]
        return choices[0].get("finish_reason")

    @property
    def response_status(self) -> str:
        status = STATUSES.get(self.status, self.status)
        return "incomplete" if status == "completed" and self.finish_reason == "length" else status


def usage(totals: dict[str, int] | None) -> dict[str, Any] | None:
    """Chat usage in the Responses shape (no cache, no reasoning here: their details are zero)."""
    if totals is None:
        return None
    return {
        "input_tokens": totals.get("prompt_tokens", 0),
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": totals.get("completion_tokens", 0),
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": totals.get("total_tokens", 0),
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(job_id: str, text: str | None, status: str) -> dict[str, Any]:
    """The assistant message item; `text` None while it has no content part yet (streaming)."""
    content = [] if text is None else [text_part(text)]
    return {"id": message_id(job_id), "type": "message", "status": status, "content": content, "role": "assistant"}


def call_item(job_id: str, index: int, call: dict[str, Any], status: str = "completed") -> dict[str, Any]:
    """A chat `tool_calls` entry as a Responses function_call item (its `call_id` is the chat call's id)."""
    function = call.get("function") or {}
    return {
        "id": call_item_id(job_id, index),
        "type": "function_call",
        "status": status,
        "arguments": function.get("arguments", "") if status == "completed" else "",
        "call_id": call.get("id", ""),
        "name": function.get("name", ""),
    }


def answer(result: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
    """The text and the tool calls of a chat body's first choice."""
    choices = (result or {}).get("choices") or []
    if not choices:
        return "", []
    message = choices[0].get("message") or {}
    return message.get("content") or "", list(message.get("tool_calls") or [])


def output_items(record: ResponseRecord) -> list[dict[str, Any]]:
    """A message item (unless the answer is only tool calls), then one function_call item per call."""
    if record.result is None:
        return []
    text, calls = answer(record.result)
    items = []
    if text or not calls:
        status = "incomplete" if record.response_status == "incomplete" else "completed"
        items.append(message_item(record.job_id, text, status))
    items.extend(call_item(record.job_id, i, call) for i, call in enumerate(calls))
    return items


def error(record: ResponseRecord) -> dict[str, Any] | None:
    """OpenAI's Response error: its `code` is one of a closed set, so inferq's own code leads the message."""
    if record.status == "expired":
        code, message = "job_expired", "The response was not started within its expires_in."
    elif record.status == "failed":
        body = (record.error or {}).get("error", record.error or {})
        code, message = body.get("code") or "server_error", body.get("message") or "The job failed."
    else:
        return None
    if code in ERROR_CODES:
        return {"code": code, "message": message}
    return {
        "code": "rate_limit_exceeded" if code.startswith("too_many") else "server_error",
        "message": f"{code}: {message}",
    }


def render(record: ResponseRecord, *, status: str | None = None, with_output: bool = True) -> dict[str, Any]:
    """The Response object; `status` and `with_output=False` give a stream's early snapshots."""
    params = record.params
    status = status or record.response_status
    ended = status not in ("queued", "in_progress")
    incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
    return {
        "id": response_id(record.job_id),
        "object": "response",
        "created_at": int(record.created_at),
        "status": status,
        "background": params.background,
        "completed_at": int(record.completed_at) if ended and record.completed_at else None,
        "error": error(record) if ended else None,
        "incomplete_details": incomplete,
        "instructions": params.instructions,
        "max_output_tokens": params.max_output_tokens,
        "max_tool_calls": None,
        "model": record.model,
        "output": output_items(record) if with_output and ended else [],
        "parallel_tool_calls": params.parallel_tool_calls,
        "previous_response_id": None,
        "prompt_cache_key": params.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": params.safety_identifier,
        "service_tier": params.service_tier,
        "store": params.store,
        "temperature": params.temperature,
        "text": params.text,
        "tool_choice": params.tool_choice,
        "tools": params.tools,
        "top_logprobs": 0,
        "top_p": params.top_p,
        "truncation": params.truncation,
        "usage": usage(record.usage) if ended else None,
        "user": params.user,
        "metadata": params.metadata,
    }

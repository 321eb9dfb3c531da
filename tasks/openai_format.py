"""OpenAI response bodies built from the engine's plain outputs.

Built in the worker, stored in the job record, and returned unchanged by the
synchronous endpoints and by `GET /queue/jobs/<id>`, so both always agree.
"""

from __future__ import annotations

from typing import Any

FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "stop"}


def response_id(endpoint: str, job_id: str) -> str:
    suffix = job_id.removeprefix("job_")
    return ("chatcmpl-" if endpoint == "chat" else "cmpl-") + suffix


def finish_reason(choice: dict[str, Any]) -> str | None:
    reason = choice.get("finish_reason")
    return FINISH_REASONS.get(reason, reason) if reason else None


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _token_bytes(token: str) -> list[int]:
    return list(token.encode("utf-8"))


def chat_logprobs(entries: list[dict[str, Any]] | None, top: int) -> dict[str, Any] | None:
    if entries is None:
        return None
    content = []
    for entry in entries:
        content.append(
            {
                "token": entry["token"],
                "logprob": entry["logprob"],
                "bytes": _token_bytes(entry["token"]),
                "top_logprobs": [
                    {"token": alt["token"], "logprob": alt["logprob"], "bytes": _token_bytes(alt["token"])}
                    for alt in entry["top"][:top]
                ],
            }
        )
    return {"content": content}


def completion_logprobs(entries: list[dict[str, Any]] | None, top: int, offset: int = 0) -> dict[str, Any] | None:
    if entries is None:
        return None
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    position = offset
    for entry in entries:
        tokens.append(entry["token"])
        token_logprobs.append(entry["logprob"])
        top_logprobs.append({alt["token"]: alt["logprob"] for alt in entry["top"][:top]} if top else None)
        text_offset.append(position)
        position += len(entry["token"])
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    }


def chat_choice(index: int, choice: dict[str, Any], top_logprobs: int | None) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": choice["text"]},
        "logprobs": chat_logprobs(choice.get("logprobs"), top_logprobs or 0) if top_logprobs is not None else None,
        "finish_reason": finish_reason(choice),
    }


def completion_choice(
    index: int, choice: dict[str, Any], logprobs: int | None, echo_text: str | None
) -> dict[str, Any]:
    prefix = echo_text or ""
    return {
        "index": index,
        "text": prefix + choice["text"],
        "logprobs": completion_logprobs(choice.get("logprobs"), logprobs or 0, len(prefix))
        if logprobs is not None
        else None,
        "finish_reason": finish_reason(choice),
    }


def completion_body(
    *,
    job_id: str,
    request: dict[str, Any],
    created: int,
    results: list[dict[str, Any]],
) -> dict[str, Any]:
    """The final body for a chat or text completion.

    `results` has one entry per prompt: `{"prompt_tokens", "choices": [...]}`;
    choices of prompt `p` get indices `p * n ...`, as OpenAI numbers them.
    """
    endpoint = request["endpoint"]
    n = request["params"].get("n") or 1
    choices = []
    prompt_tokens = completion_tokens = 0
    for p, result in enumerate(results):
        prompt_tokens += result["prompt_tokens"]
        for choice in result["choices"]:
            index = p * n + choice["index"]
            completion_tokens += len(choice["token_ids"])
            if endpoint == "chat":
                choices.append(chat_choice(index, choice, request.get("top_logprobs")))
            else:
                echo = request["prompt_texts"][p] if request.get("echo") else None
                choices.append(completion_choice(index, choice, request.get("logprobs"), echo))
    choices.sort(key=lambda c: c["index"])
    return {
        "id": response_id(endpoint, job_id),
        "object": "chat.completion" if endpoint == "chat" else "text_completion",
        "created": created,
        "model": request["model"],
        "choices": choices,
        "usage": usage(prompt_tokens, completion_tokens),
        "system_fingerprint": None,
    }


def stream_chunk(
    *,
    job_id: str,
    request: dict[str, Any],
    index: int,
    choice: dict[str, Any],
    first: bool,
) -> dict[str, Any]:
    """One SSE chunk for one choice's delta, in OpenAI's streaming shapes."""
    endpoint = request["endpoint"]
    base = {"id": response_id(endpoint, job_id), "created": request["created"], "model": request["model"]}
    if endpoint == "chat":
        delta: dict[str, Any] = {"content": choice["text"]}
        if first:
            delta = {"role": "assistant", **delta}
        top = request.get("top_logprobs")
        out = {
            "index": index,
            "delta": delta,
            "logprobs": chat_logprobs(choice.get("logprobs"), top or 0) if top is not None else None,
            "finish_reason": finish_reason(choice),
        }
        body = {**base, "object": "chat.completion.chunk", "choices": [out], "system_fingerprint": None}
    else:
        logprobs = request.get("logprobs")
        out = {
            "index": index,
            "text": choice["text"],
            "logprobs": completion_logprobs(choice.get("logprobs"), logprobs or 0) if logprobs is not None else None,
            "finish_reason": finish_reason(choice),
        }
        body = {**base, "object": "text_completion", "choices": [out]}
    if request.get("include_usage"):
        body["usage"] = None
    return body


def usage_chunk(*, job_id: str, request: dict[str, Any], usage_: dict[str, int]) -> dict[str, Any]:
    endpoint = request["endpoint"]
    return {
        "id": response_id(endpoint, job_id),
        "object": "chat.completion.chunk" if endpoint == "chat" else "text_completion",
        "created": request["created"],
        "model": request["model"],
        "choices": [],
        "usage": usage_,
    }

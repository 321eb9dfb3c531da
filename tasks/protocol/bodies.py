"""OpenAI response bodies and stream chunks, from the engine's typed outputs.

The worker builds the final body and stores it in the job record; the
synchronous routes and `GET /queue/jobs/<id>` return it unchanged, so both
always agree. The API builds stream chunks from the deltas it reads. Shapes
follow what OpenAI sends: fields it leaves out (`system_fingerprint` when
there is none) are left out, not sent as null.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from tasks.protocol.requests import CHAT, EmbeddingRequest, GenerationRequest
from workers.outputs import Choice, PromptResult, TokenLogprob

#: vLLM reports an aborted sample as `abort`, which OpenAI does not know; `tool_calls` comes from workers.tools.
FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "stop", "tool_calls": "tool_calls"}


def response_id(request: GenerationRequest, job_id: str) -> str:
    return ("chatcmpl-" if request.endpoint == CHAT else "cmpl-") + job_id.removeprefix("job_")


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish_reason(choice: Choice) -> str | None:
    reason = choice.finish_reason
    return FINISH_REASONS.get(reason, reason) if reason else None


def _chat_logprobs(entries: list[TokenLogprob] | None, top: int) -> dict[str, Any] | None:
    if entries is None:
        return None
    content = [
        {
            "token": entry.token,
            "logprob": entry.logprob,
            "bytes": list(entry.token.encode()),
            "top_logprobs": [
                {"token": token, "logprob": value, "bytes": list(token.encode())} for token, value in entry.top[:top]
            ],
        }
        for entry in entries
    ]
    return {"content": content, "refusal": None}


def _completion_logprobs(entries: list[TokenLogprob] | None, top: int, offset: int = 0) -> dict[str, Any] | None:
    if entries is None:
        return None
    tokens, token_logprobs, top_logprobs, text_offset = [], [], [], []
    for entry in entries:
        tokens.append(entry.token)
        token_logprobs.append(entry.logprob)
        # The first prompt token of an echo has no logprob, and no alternatives either.
        top_logprobs.append(dict(entry.top[:top]) if entry.logprob is not None else None)
        text_offset.append(offset)
        offset += len(entry.token)
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": text_offset,
    }


def _echo_logprobs(request: GenerationRequest, p: int, result: PromptResult) -> list[TokenLogprob]:
    entries = list(result.prompt_logprobs or [])
    if entries and request.echo_first_tokens:
        entries[0] = TokenLogprob(request.echo_first_tokens[p], None)
    return entries


def _message(choice: Choice) -> dict[str, Any]:
    """The assistant message: its text, or `content: null` and the calls workers.tools decided on."""
    if choice.tool_calls is None:
        return {"role": "assistant", "content": choice.text, "refusal": None}
    return {
        "role": "assistant",
        "content": choice.text or None,
        "refusal": None,
        "tool_calls": [call.to_openai() for call in choice.tool_calls],
    }


def _chat_delta(choice: Choice, first: bool) -> dict[str, Any]:
    """A chunk's delta; tool calls come whole, each with its index, id, type and name, as OpenAI's first does."""
    delta: dict[str, Any] = {"role": "assistant"} if first else {}
    if choice.tool_calls is None:
        delta["content"] = choice.text
        return delta
    delta["content"] = choice.text or None
    delta["tool_calls"] = [{"index": i, **call.to_openai()} for i, call in enumerate(choice.tool_calls)]
    return delta


def _chat_choice(request: GenerationRequest, index: int, choice: Choice) -> dict[str, Any]:
    top = request.sampling.logprobs
    return {
        "index": index,
        "message": _message(choice),
        "logprobs": _chat_logprobs(choice.logprobs, top) if top is not None else None,
        "finish_reason": _finish_reason(choice),
    }


def _completion_choice(request: GenerationRequest, p: int, index: int, choice: Choice, result: PromptResult):
    top = request.sampling.logprobs
    prefix = request.echo[p] if request.echo else ""
    logprobs = None
    if top is not None:
        entries = choice.logprobs or []
        if request.echo and request.sampling.prompt_logprobs is not None:
            entries = _echo_logprobs(request, p, result) + entries
        logprobs = _completion_logprobs(entries, top)
    return {"index": index, "text": prefix + choice.text, "logprobs": logprobs, "finish_reason": _finish_reason(choice)}


def completion_body(job_id: str, request: GenerationRequest, results: list[PromptResult], computed: int) -> dict:
    """The final chat or text completion; choices of prompt `p` are numbered `p * n + i`, as OpenAI does.

    `computed` is every token the engine generated, including samples that
    best_of discarded: usage bills what was computed.
    """
    n = request.sampling.n
    choices = []
    for p, result in enumerate(results):
        for choice in result.choices:
            index = p * n + choice.index
            if request.endpoint == CHAT:
                choices.append(_chat_choice(request, index, choice))
            else:
                choices.append(_completion_choice(request, p, index, choice, result))
    choices.sort(key=lambda c: c["index"])
    return {
        "id": response_id(request, job_id),
        "object": "chat.completion" if request.endpoint == CHAT else "text_completion",
        "created": request.created,
        "model": request.model,
        "choices": choices,
        "usage": usage(sum(result.prompt_tokens for result in results), computed),
    }


def stream_chunk(
    job_id: str, request: GenerationRequest, index: int, choice: Choice, first: bool, offset: int = 0
) -> dict[str, Any]:
    """One SSE chunk for one choice's delta, in OpenAI's streaming shapes.

    `offset` is how much text this choice streamed before: a text completion's
    `text_offset` counts from the start of the whole answer, not of the chunk.
    """
    top = request.sampling.logprobs
    if request.endpoint == CHAT:
        delta = _chat_delta(choice, first)
        logprobs = _chat_logprobs(choice.logprobs, top) if top is not None else None
        out = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": _finish_reason(choice)}
    else:
        logprobs = _completion_logprobs(choice.logprobs, top, offset) if top is not None else None
        out = {"index": index, "text": choice.text, "logprobs": logprobs, "finish_reason": _finish_reason(choice)}
    body = _chunk_head(job_id, request)
    body["choices"] = [out]
    if request.include_usage:
        body["usage"] = None
    return body


def usage_chunk(job_id: str, request: GenerationRequest, totals: dict[str, int]) -> dict[str, Any]:
    return {**_chunk_head(job_id, request), "choices": [], "usage": totals}


def _chunk_head(job_id: str, request: GenerationRequest) -> dict[str, Any]:
    return {
        "id": response_id(request, job_id),
        "object": "chat.completion.chunk" if request.endpoint == CHAT else "text_completion",
        "created": request.created,
        "model": request.model,
    }


def encode_base64(vector: list[float]) -> str:
    """OpenAI's `encoding_format=base64`: the float32 values as little-endian bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embedding_body(request: EmbeddingRequest, vectors: list[list[float]]) -> dict[str, Any]:
    as_base64 = request.encoding_format == "base64"
    prompt_tokens = sum(len(prompt) for prompt in request.prompts)
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_base64(vector) if as_base64 else vector}
            for i, vector in enumerate(vectors)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }

"""Turn a validated body into the typed job request the queue carries (tasks.protocol).

Everything that can be refused is refused here, before a job exists: unknown
model, wrong model kind, a system message the template cannot take, a prompt
that does not fit the context, more sequences than one request may ask for,
a min_tokens that the effective max_tokens cannot meet, token ids outside the
vocabulary. The worker only ever receives token ids.
"""

from __future__ import annotations

import time
from typing import Any

from flask import current_app

from app.auth import model_allowed
from app.chat_messages import template_messages
from app.context import settings
from app.tokenizers import ModelTokenizer, TemplateError
from tasks.models import ModelSpec
from tasks.protocol.errors import InvalidRequest, ModelNotFound
from tasks.protocol.requests import CHAT, COMPLETION, EmbeddingRequest, GenerationRequest
from workers.sampling import LIST_FIELDS, Sampling
from workers.structured import InvalidSchema, canonical, check_schema
from workers.tools import NAMED, Function, Tools

#: OpenAI's default max_tokens for text completions.
DEFAULT_COMPLETION_TOKENS = 16


def resolve_model(name: str | None, path_model: str | None = None, kind: str | None = "generate") -> ModelSpec:
    """The model named in the path wins over the body's `model`; `kind=None` accepts any kind."""
    model = path_model or name
    if not model:
        raise InvalidRequest("You must provide a model parameter.", param="model", code="missing_required_parameter")
    specs = settings().models
    spec = specs.get(model)
    if spec is None or not model_allowed(model):  # a key's allow-list hides the other models
        raise ModelNotFound(model)
    if kind is not None and spec.kind != kind:
        what = "chat and text completions" if kind == "generate" else "embeddings"
        raise InvalidRequest(f"The model `{model}` does not serve {what}.", param="model", code="model_not_supported")
    return spec


def tokenizer(spec: ModelSpec) -> ModelTokenizer:
    return current_app.extensions["inferq.tokenizers"].get(spec)


def _check_context(spec: ModelSpec, prompt_tokens: int, max_tokens: int | None, what: str) -> int:
    """Return the effective max_tokens, or refuse a request that cannot fit."""
    limit = spec.max_model_len
    requested = prompt_tokens + (max_tokens or 0)
    if prompt_tokens >= limit or requested > limit:
        raise InvalidRequest(
            f"This model's maximum context length is {limit} tokens. "
            f"However, you requested {max(requested, prompt_tokens)} tokens "
            f"({prompt_tokens} in the {what}, {max_tokens or 0} in the completion). "
            f"Please reduce the length of the {what} or completion.",
            param="messages" if what == "messages" else "prompt",
            code="context_length_exceeded",
        )
    return max_tokens if max_tokens is not None else limit - prompt_tokens


def chat_prompt(spec: ModelSpec, data: dict[str, Any]) -> list[int]:
    """The token ids the engine will see for `data["messages"]` (and the tools offered to the model).

    Shared by chat completions and the token counter, so a counted conversation
    and the `prompt_tokens` its completion reports are equal by construction.
    """
    if not spec.system_message and any(m["role"] in ("system", "developer") for m in data["messages"]):
        raise InvalidRequest(
            f"The model `{spec.id}` does not accept system messages; put the instructions in the first user message.",
            param="messages",
            code="system_message_not_supported",
        )
    tok = tokenizer(spec)
    offered = data.get("tools") if data.get("tool_choice") != "none" else None
    messages, tools = template_messages(
        data["messages"], offered, knows_tools=tok.knows_tools, system_ok=spec.system_message
    )
    try:
        return tok.encode_chat(messages, data.get("add_generation_prompt", True), tools)
    except TemplateError as exc:
        raise InvalidRequest(
            f"The conversation does not fit the model's chat template: {exc}", param="messages"
        ) from exc


def tool_spec(spec: ModelSpec, data: dict[str, Any]) -> Tools | None:
    """How this chat's output becomes tool calls (workers.tools); None when no tool may be called."""
    choice = data.get("tool_choice") or "auto"
    if not data.get("tools") or choice == "none":
        return None
    if choice == "auto" and not spec.tool_parser:
        raise InvalidRequest(
            f"The model `{spec.id}` has no tool-call parser, so it cannot choose on its own whether to call a tool "
            'with tool_choice "auto" (the default when tools are given). Send tool_choice "required" or a named '
            'function (both are enforced by constrained decoding), or "none".',
            param="tool_choice",
            code="tool_choice_not_supported",
        )
    functions = tuple(
        Function(t["function"]["name"], t["function"].get("description"), _schema_text(t["function"].get("parameters")))
        for t in data["tools"]
    )
    named = choice["function"]["name"] if isinstance(choice, dict) else None
    parallel = data.get("parallel_tool_calls") is not False
    return Tools(functions, NAMED if named else choice, named, parallel, spec.tool_parser)


def _schema_text(schema: dict[str, Any] | None) -> str | None:
    return canonical(schema) if schema else None


def constraint(data: dict[str, Any], tools: Tools | None) -> dict[str, Any]:
    """Sampling's constrained-decoding fields: a forced tool call's schema, else the response_format's."""
    try:
        schema = tools.constraint() if tools else None
        if schema is not None:
            return {"json_schema": check_schema(schema)}
    except (ValueError, InvalidSchema) as exc:
        raise InvalidRequest(f"The tools cannot be combined into one schema: {exc}", param="tools") from exc
    response_format = data.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return {"json_schema": check_schema(response_format["json_schema"]["schema"])}
    if response_format.get("type") == "json_object":
        return {"json_object": True}
    return {}


def count_tokens(spec: ModelSpec, data: dict[str, Any]) -> int:
    """Tokens in `prompt` or `messages`, counted as the completion endpoints count them."""
    if data.get("messages") is not None:
        return len(chat_prompt(spec, data))
    return len(tokenizer(spec).encode(data["prompt"]))


def sampling(data: dict[str, Any], **decided: Any) -> Sampling:
    """The engine's sampling options from a loaded body: what the caller set, else Sampling's defaults.

    OpenAI treats an explicit null as "use the default", so None never overrides.
    """
    given = {name: data[name] for name in SAMPLING_FIELDS if data.get(name) is not None}
    for name in LIST_FIELDS:
        if name in given:
            given[name] = tuple(given[name])
    if "logit_bias" in given:
        given["logit_bias"] = tuple((int(token), float(bias)) for token, bias in given["logit_bias"].items())
    return Sampling(**{**given, **decided})


#: What the body sets directly; the rest is decided here (limits, logprobs, constrained decoding).
DECIDED_FIELDS = ("logprobs", "prompt_logprobs", "max_tokens", "json_schema", "json_object")
SAMPLING_FIELDS = tuple(name for name in Sampling.__dataclass_fields__ if name not in DECIDED_FIELDS)


def _streaming(data: dict[str, Any]) -> dict[str, bool]:
    return {
        "stream": bool(data.get("stream")),
        "include_usage": bool((data.get("stream_options") or {}).get("include_usage")),
    }


def _check_token_ids(tok: ModelTokenizer, data: dict[str, Any]) -> None:
    """Token ids the caller names must exist in the model's vocabulary (the engine would fail on them)."""
    vocab = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    named = {
        "logit_bias": [int(key) for key in data.get("logit_bias") or {}],
        "allowed_token_ids": data.get("allowed_token_ids") or [],
        "stop_token_ids": data.get("stop_token_ids") or [],
    }
    for param, ids in named.items():
        if any(token >= vocab for token in ids):
            raise InvalidRequest(f"{param} holds a token id outside the vocabulary (size {vocab}).", param=param)
    if len(named["allowed_token_ids"]) > vocab:  # more ids than the vocabulary has can only be repeats
        raise InvalidRequest(
            f"allowed_token_ids may name at most the {vocab} tokens of the vocabulary.", param="allowed_token_ids"
        )


def _check_fan_out(prompts: int, params: Sampling) -> None:
    """prompts × max(n, best_of) is what the engine runs at once: one request may not take all of it.

    Checked before a prompt is tokenised; the param names the factor to lower:
    `prompt` when the prompts alone are too many (or each is sampled once), else `n` or `best_of`.
    """
    limit = settings().max_sequences_per_request
    sequences = prompts * params.samples
    if sequences <= limit:
        return
    sampler = "best_of" if params.samples > params.n else "n"
    param = "prompt" if prompts > limit or params.samples == 1 else sampler
    raise InvalidRequest(
        f"This request asks for {prompts} prompt(s) × {params.samples} sample(s) each (the larger of n and best_of)"
        f" = {sequences} sequences; at most {limit} are allowed per request. "
        f"Lower {param}, or split the prompts over several requests.",
        param=param,
        code="too_many_sequences",
    )


def _check_min_tokens(data: dict[str, Any], max_tokens: int, source: str) -> None:
    """min_tokens must be reachable: at most the effective max_tokens (so within the model's context)."""
    min_tokens = data.get("min_tokens") or 0
    if min_tokens > max_tokens:
        raise InvalidRequest(
            f"min_tokens ({min_tokens}) must be at most max_tokens ({max_tokens}, {source}).", param="min_tokens"
        )


def chat_request(spec: ModelSpec, data: dict[str, Any]) -> GenerationRequest:
    _check_fan_out(1, sampling(data))
    _check_token_ids(tokenizer(spec), data)
    prompt = chat_prompt(spec, data)
    requested = data.get("max_completion_tokens") or data.get("max_tokens")
    max_tokens = _check_context(spec, len(prompt), requested, "messages")
    _check_min_tokens(data, max_tokens, "as requested" if requested else "what the context leaves after the messages")
    logprobs = (data.get("top_logprobs") or 0) if data.get("logprobs") else None
    tools = tool_spec(spec, data)
    return GenerationRequest(
        endpoint=CHAT,
        model=spec.id,
        created=int(time.time()),
        prompts=[prompt],
        sampling=sampling(data, max_tokens=max_tokens, logprobs=logprobs, **constraint(data, tools)),
        tools=tools,
        **_streaming(data),
    )


def _completion_prompts(tok: ModelTokenizer, data: dict[str, Any]) -> list[list[int]]:
    vocab = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    prompts = []
    for index, prompt in enumerate(data["prompt"]):
        if isinstance(prompt, str):
            ids = tok.encode(prompt)
        elif any(token < 0 or token >= vocab for token in prompt):
            raise InvalidRequest(
                f"prompt[{index}] holds a token id outside the vocabulary (size {vocab}).", param="prompt"
            )
        else:
            ids = list(prompt)
        if not ids:
            raise InvalidRequest("The prompt is empty.", param="prompt")
        prompts.append(ids)
    return prompts


def completion_request(spec: ModelSpec, data: dict[str, Any]) -> GenerationRequest:
    _check_fan_out(len(data["prompt"]), sampling(data))
    tok = tokenizer(spec)
    _check_token_ids(tok, data)
    max_tokens = data.get("max_tokens") or DEFAULT_COMPLETION_TOKENS
    _check_min_tokens(data, max_tokens, "as requested" if data.get("max_tokens") else "the default")
    prompts = _completion_prompts(tok, data)
    for ids in prompts:
        _check_context(spec, len(ids), max_tokens, "prompt")
    logprobs, echo = data.get("logprobs"), bool(data.get("echo"))
    # `echo` with `logprobs` scores the prompt too (how evaluation harnesses ask for a loglikelihood).
    prompt_logprobs = logprobs if echo and logprobs is not None else None
    return GenerationRequest(
        endpoint=COMPLETION,
        model=spec.id,
        created=int(time.time()),
        prompts=prompts,
        sampling=sampling(
            data, max_tokens=max_tokens, logprobs=logprobs, prompt_logprobs=prompt_logprobs, **constraint(data, None)
        ),
        echo=[tok.decode(ids) for ids in prompts] if echo else None,
        echo_first_tokens=[tok.decode(ids[:1]) for ids in prompts] if prompt_logprobs is not None else None,
        **_streaming(data),
    )


def embedding_request(spec: ModelSpec, data: dict[str, Any]) -> EmbeddingRequest:
    """Tokenise every input and refuse, by index, any that the model cannot take."""
    tok = tokenizer(spec)
    vocab = tok.tokenizer.get_vocab_size(with_added_tokens=True)
    limit = spec.max_model_len
    prompts = []
    for index, item in enumerate(data["input"]):
        param = f"input[{index}]"
        if isinstance(item, str):
            ids = tok.encode(item)
        elif any(token < 0 or token >= vocab for token in item):
            raise InvalidRequest(f"{param} holds a token id outside the vocabulary (size {vocab}).", param=param)
        else:
            ids = list(item)
        if len(ids) > limit:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens. However, {param} has {len(ids)} tokens. "
                f"Please reduce the length of the input.",
                param=param,
                code="context_length_exceeded",
            )
        prompts.append(ids)
    return EmbeddingRequest(
        model=spec.id, created=int(time.time()), prompts=prompts, encoding_format=data.get("encoding_format", "float")
    )

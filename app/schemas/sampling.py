"""The sampling parameters shared by chat and text completions.

Names and defaults follow OpenAI; the vLLM extensions (top_k, min_p,
repetition_penalty, ...) follow the provider's docs. The dumped dict is what
travels to the worker, which maps it onto vLLM's SamplingParams.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from app.schemas.fields import StringOrList

# Parameters an OpenAI SDK may send that we accept and ignore (documented as no-ops); more in
# app.schemas.tools.OpenAIChatFields. `parallel_tool_calls` is honoured (workers.tools).
IGNORED = ("user", "metadata", "store", "service_tier")

#: A logit_bias key: a token id in ASCII digits (str.isdigit would take "²").
TOKEN_ID = re.compile(r"[0-9]{1,9}")

# Sizes a request may not exceed, each refused with a 400 naming the field. OpenAI's limit where it
# documents one, else vLLM's, else one no real client meets; the engine is shared, so none is unbounded.
#: OpenAI documents 4 stop sequences; vLLM has no limit and clients written for it send more.
MAX_STOP_SEQUENCES = 16
#: Characters in one stop string or bad word (no documented limit): real ones are a few characters.
MAX_STOP_CHARS = 1000
#: stop_token_ids (vLLM: no limit): a tokenizer has a handful of end-of-turn tokens, never thousands.
MAX_STOP_TOKEN_IDS = 1024
#: logit_bias entries (no documented limit): enough to ban or favour a few hundred words' tokens.
MAX_LOGIT_BIAS = 1024
#: bad_words (vLLM: no limit): vLLM checks each one against every sequence at every decoding step.
MAX_BAD_WORDS = 256
#: top_k and stream_interval: the engine keeps them in 32-bit integers (a top_k past the vocabulary means "off").
MAX_ENGINE_INT = 2**31 - 1
# allowed_token_ids: at most the model's vocabulary size (more can only be repeats), app.job_requests.

#: vLLM request fields that are vLLM `SamplingParams` arguments of the same name and meaning.
#: They are validated here and travel in the job's `params` (only when the client sent them)
#: so the worker can hand them to `SamplingParams(...)` as they are.
ENGINE_PASSTHROUGH_FIELDS = (
    "include_stop_str_in_output",
    "spaces_between_special_tokens",
    "allowed_token_ids",
    "bad_words",
    "stream_interval",
)

CHAT, COMPLETION, EMBEDDING = "chat", "completion", "embedding"
_GENERATE = (CHAT, COMPLETION)
_ALL = (CHAT, COMPLETION, EMBEDDING)

_BOOL = partial(fields.Boolean, allow_none=True)
_INT = partial(fields.Integer, allow_none=True)
_FLOAT = partial(fields.Float, allow_none=True)
_STR = partial(fields.String, allow_none=True)
_DICT = partial(fields.Dict, keys=fields.String(), allow_none=True)
_INTS = partial(fields.List, fields.Integer, allow_none=True)
_ANY = partial(fields.Raw, allow_none=True)


def _at_most(count: int) -> validate.Length:
    return validate.Length(max=count, error=f"at most {count} entries")


def _at_most_keys(count: int) -> Callable[[dict], None]:
    """Length for an object (apispec would document validate.Length on a Dict as maxLength)."""

    def check(value: dict) -> None:
        if len(value) > count:
            raise ValidationError(f"at most {count} entries")

    return check


def _one_of(*choices: str) -> Callable[..., fields.Field]:
    return partial(fields.String, allow_none=True, validate=validate.OneOf(choices))


@dataclass(frozen=True)
class Ignored:
    """A vLLM request field we accept and do nothing with: its type, where vLLM defines it, and why."""

    field: Callable[..., fields.Field]
    endpoints: tuple[str, ...]
    reason: str


#: Every other field vLLM's OpenAI server accepts on chat, completions and embeddings: accepted
#: (so clients written for vLLM work), type-checked, dropped after validation, never sent on.
IGNORED_VLLM_FIELDS: dict[str, Ignored] = {
    # Sampling and decoding
    "use_beam_search": Ignored(_BOOL, _GENERATE, "beam search is not offered; the request is sampled"),
    "length_penalty": Ignored(_FLOAT, _GENERATE, "only used by beam search, which is not offered"),
    "watermarking": Ignored(_BOOL, _GENERATE, "no watermarking is configured on the engines"),
    "prompt_logprobs": Ignored(_INT, _GENERATE, "prompt logprobs are returned only by echo + logprobs"),
    "logprob_token_ids": Ignored(_INTS, _GENERATE, "logprobs cover the top tokens, not a chosen label set"),
    "repetition_detection": Ignored(_DICT, _GENERATE, "no early stop on repeated n-grams; max_tokens bounds"),
    "thinking_token_budget": Ignored(_INT, _GENERATE, "no served model reasons"),
    "structured_outputs": Ignored(_DICT, _GENERATE, "vLLM's own form; send OpenAI's response_format (json_schema)"),
    "vllm_xargs": Ignored(_DICT, _GENERATE, "no custom engine extensions are installed"),
    # Prompt building (inferq tokenises in the API with the model's own template)
    "truncate_prompt_tokens": Ignored(_INT, _ALL, "an over-long prompt is a 400 naming the limit, never cut"),
    "truncation_side": Ignored(_one_of("left", "right"), _ALL, "prompts are never truncated"),
    "add_special_tokens": Ignored(_BOOL, _ALL, "the tokenizer's defaults (and chat template) apply"),
    "prompt_embeds": Ignored(_ANY, (COMPLETION,), "prompts are text or token ids; embeddings are not taken"),
    "echo": Ignored(_BOOL, (CHAT,), "chat never prepends the last message (completions' echo is honoured)"),
    "continue_final_message": Ignored(_BOOL, (CHAT,), "the chat template always closes the last message"),
    "documents": Ignored(partial(fields.List, fields.Dict, allow_none=True), (CHAT,), "no RAG templates"),
    "chat_template": Ignored(_STR, (CHAT,), "the model's own chat template is always used"),
    "chat_template_kwargs": Ignored(_DICT, (CHAT,), "the model's own chat template takes no arguments"),
    "media_io_kwargs": Ignored(_DICT, (CHAT,), "text-only models: no media"),
    "mm_processor_kwargs": Ignored(_DICT, (CHAT, EMBEDDING), "text-only models: no multimodal processor"),
    "mm_payload": Ignored(_one_of("tensors", "none"), _GENERATE, "only for vLLM's render endpoints"),
    "return_mm_kwargs": Ignored(_BOOL, _GENERATE, "only for vLLM's render endpoints"),
    # Tools and reasoning (chat)
    "reasoning_effort": Ignored(_STR, (CHAT,), "no served model reasons"),
    "include_reasoning": Ignored(_BOOL, (CHAT,), "no served model reasons"),
    # Response extras
    "return_tokens_as_token_ids": Ignored(_BOOL, _GENERATE, "logprob tokens are always text"),
    "return_token_ids": Ignored(_BOOL, _GENERATE, "responses carry text, as OpenAI's do"),
    "return_token_offsets": Ignored(_BOOL, _GENERATE, "only for vLLM's render endpoints"),
    "return_prompt_text": Ignored(_BOOL, (CHAT,), "responses carry no prompt text, as OpenAI's do"),
    "routed_experts_prompt_start": Ignored(_INT, _GENERATE, "no mixture-of-experts routing data is returned"),
    # Request bookkeeping and serving topology
    "request_id": Ignored(_STR, _ALL, "inferq names every request by its own job id"),
    "session_id": Ignored(_STR, _GENERATE, "no session-affine routing: any worker of the model serves"),
    "priority": Ignored(_INT, _ALL, "engine priority scheduling is off; queue jobs take a priority of their own"),
    "cache_salt": Ignored(_STR, _ALL, "prefix caching is off on these engines"),
    "kv_transfer_params": Ignored(_DICT, _GENERATE, "no disaggregated prefill"),
    "ec_transfer_params": Ignored(_DICT, _GENERATE, "no disaggregated encoder cache"),
    "stream_options.continuous_usage_stats": Ignored(
        _BOOL, _GENERATE, "usage comes once, in the last chunk, as OpenAI sends it"
    ),
    # Embeddings
    "padding": Ignored(_one_of("max_length", "do_not_pad"), (EMBEDDING,), "inputs are never padded"),
    "use_activation": Ignored(_BOOL, (EMBEDDING,), "the model's pooler settings (normalised) apply"),
    "embed_dtype": Ignored(
        _one_of("float32"), (EMBEDDING,), "base64 is always float32 (OpenAI's); other dtypes are refused"
    ),
    "endianness": Ignored(
        _one_of("native", "little"), (EMBEDDING,), "base64 is always little-endian (OpenAI's); big is refused"
    ),
}


class DropsIgnoredFields(Schema):
    """Drops, once loaded, every field marked `ignored`: accepted and checked, never sent on."""

    @post_load
    def _drop_ignored(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {key: value for key, value in data.items() if "ignored" not in self.fields[key].metadata}


def _ignored_field(name: str) -> fields.Field:
    spec = IGNORED_VLLM_FIELDS[name]
    return spec.field(metadata={"ignored": spec.reason})


def ignored_vllm_fields(endpoint: str) -> type[Schema]:
    """A schema mixin declaring the ignored top-level vLLM fields of one endpoint.

    A subclass that declares a field of the same name itself (the queue's `priority`) keeps its own.
    """
    declared = {
        name: _ignored_field(name)
        for name, spec in IGNORED_VLLM_FIELDS.items()
        if endpoint in spec.endpoints and "." not in name
    }
    return type(f"IgnoredVllm{endpoint.title()}Fields", (DropsIgnoredFields,), declared)


class StreamOptionsSchema(DropsIgnoredFields):
    class Meta:
        unknown = RAISE

    include_usage = fields.Boolean(load_default=False)
    continuous_usage_stats = _ignored_field("stream_options.continuous_usage_stats")


class SamplingSchema(Schema):
    class Meta:
        unknown = RAISE

    model = fields.String(validate=validate.Length(min=1, max=256))
    n = fields.Integer(validate=validate.Range(min=1, max=128))
    best_of = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=128))
    temperature = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1, min_inclusive=False))
    top_k = fields.Integer(allow_none=True, validate=validate.Range(min=-1, max=MAX_ENGINE_INT))
    min_p = fields.Float(allow_none=True, validate=validate.Range(min=0, max=1))
    presence_penalty = fields.Float(allow_none=True, validate=validate.Range(min=-2, max=2))
    frequency_penalty = fields.Float(allow_none=True, validate=validate.Range(min=-2, max=2))
    repetition_penalty = fields.Float(allow_none=True, validate=validate.Range(min=0, max=2, min_inclusive=False))
    seed = fields.Integer(allow_none=True, validate=validate.Range(min=-(2**63), max=2**63 - 1))
    stop = StringOrList(allow_none=True, max_items=MAX_STOP_SEQUENCES, max_length=MAX_STOP_CHARS)
    stop_token_ids = fields.List(
        fields.Integer(validate=validate.Range(min=0)), allow_none=True, validate=_at_most(MAX_STOP_TOKEN_IDS)
    )
    max_tokens = fields.Integer(allow_none=True, validate=validate.Range(min=1))
    min_tokens = fields.Integer(validate=validate.Range(min=0))
    ignore_eos = fields.Boolean()
    detokenize = fields.Boolean()
    skip_special_tokens = fields.Boolean()
    logit_bias = fields.Dict(
        keys=fields.String(),
        values=fields.Float(validate=validate.Range(min=-100, max=100)),
        allow_none=True,
        validate=_at_most_keys(MAX_LOGIT_BIAS),
        metadata={"maxProperties": MAX_LOGIT_BIAS},
    )
    stream = fields.Boolean(load_default=False)
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True, load_default=None)
    user = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    store = fields.Boolean(allow_none=True)
    service_tier = fields.String(allow_none=True)
    parallel_tool_calls = fields.Boolean(allow_none=True)
    # vLLM's SamplingParams arguments, passed on as they are (ENGINE_PASSTHROUGH_FIELDS).
    include_stop_str_in_output = fields.Boolean()
    spaces_between_special_tokens = fields.Boolean()
    allowed_token_ids = fields.List(
        fields.Integer(validate=validate.Range(min=0)), allow_none=True, validate=validate.Length(min=1)
    )
    bad_words = fields.List(
        fields.String(validate=validate.Length(min=1, max=MAX_STOP_CHARS)), validate=_at_most(MAX_BAD_WORDS)
    )
    stream_interval = fields.Integer(allow_none=True, validate=validate.Range(min=1, max=MAX_ENGINE_INT))

    @validates_schema
    def _check_combinations(self, data: dict[str, Any], **kwargs: Any) -> None:
        n, best_of = data.get("n", 1), data.get("best_of")
        if best_of is not None and best_of < n:
            raise ValidationError("best_of must be greater than or equal to n", "best_of")
        if data.get("temperature") == 0 and max(n, best_of or 1) > 1:
            raise ValidationError("n and best_of must be 1 when temperature is 0 (greedy sampling)", "n")
        if best_of is not None and best_of > n and data.get("stream"):
            raise ValidationError("best_of cannot be used with stream", "best_of")
        if data.get("stop") and data.get("detokenize") is False:
            raise ValidationError("stop strings need detokenize (use stop_token_ids instead)", "stop")
        bias = data.get("logit_bias") or {}
        if any(not TOKEN_ID.fullmatch(key) for key in bias):
            raise ValidationError("keys must be token ids", "logit_bias")
        if data.get("stream_options") and not data.get("stream"):
            raise ValidationError("stream_options is only allowed when stream is true", "stream_options")

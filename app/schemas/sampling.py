"""The sampling parameters shared by chat and text completions.

Names and defaults follow OpenAI; the vLLM extensions (top_k, min_p,
repetition_penalty, ...) follow the provider's docs. The dumped dict is what
travels to the worker, which maps it onto vLLM's SamplingParams.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app.schemas.fields import StringOrList

# Parameters an OpenAI SDK may send that we accept and ignore (documented as no-ops).
IGNORED = ("user", "metadata", "store", "service_tier", "parallel_tool_calls")


class StreamOptionsSchema(Schema):
    class Meta:
        unknown = RAISE

    include_usage = fields.Boolean(load_default=False)


class SamplingSchema(Schema):
    class Meta:
        unknown = RAISE

    model = fields.String(validate=validate.Length(min=1, max=256))
    n = fields.Integer(load_default=1, validate=validate.Range(min=1, max=128))
    best_of = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1, max=128))
    temperature = fields.Float(allow_none=True, load_default=1.0, validate=validate.Range(min=0, max=2))
    top_p = fields.Float(allow_none=True, load_default=1.0, validate=validate.Range(min=0, max=1, min_inclusive=False))
    top_k = fields.Integer(allow_none=True, load_default=-1, validate=validate.Range(min=-1))
    min_p = fields.Float(allow_none=True, load_default=0.0, validate=validate.Range(min=0, max=1))
    presence_penalty = fields.Float(allow_none=True, load_default=0.0, validate=validate.Range(min=-2, max=2))
    frequency_penalty = fields.Float(allow_none=True, load_default=0.0, validate=validate.Range(min=-2, max=2))
    repetition_penalty = fields.Float(
        allow_none=True, load_default=1.0, validate=validate.Range(min=0, max=2, min_inclusive=False)
    )
    seed = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=-(2**63), max=2**63 - 1))
    stop = StringOrList(allow_none=True, load_default=None)
    stop_token_ids = fields.List(fields.Integer(validate=validate.Range(min=0)), allow_none=True, load_default=None)
    max_tokens = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=1))
    min_tokens = fields.Integer(load_default=0, validate=validate.Range(min=0))
    ignore_eos = fields.Boolean(load_default=False)
    detokenize = fields.Boolean(load_default=True)
    skip_special_tokens = fields.Boolean(load_default=True)
    logit_bias = fields.Dict(
        keys=fields.String(),
        values=fields.Float(validate=validate.Range(min=-100, max=100)),
        allow_none=True,
        load_default=None,
    )
    stream = fields.Boolean(load_default=False)
    stream_options = fields.Nested(StreamOptionsSchema, allow_none=True, load_default=None)
    user = fields.String(allow_none=True)
    metadata = fields.Dict(allow_none=True)
    store = fields.Boolean(allow_none=True)
    service_tier = fields.String(allow_none=True)
    parallel_tool_calls = fields.Boolean(allow_none=True)

    @validates_schema
    def _check_combinations(self, data: dict[str, Any], **kwargs: Any) -> None:
        n, best_of = data.get("n", 1), data.get("best_of")
        if best_of is not None and best_of < n:
            raise ValidationError("best_of must be greater than or equal to n", "best_of")
        if data.get("temperature") == 0 and max(n, best_of or 1) > 1:
            raise ValidationError("n and best_of must be 1 when temperature is 0 (greedy sampling)", "n")
        if best_of is not None and best_of > n and data.get("stream"):
            raise ValidationError("best_of cannot be used with stream", "best_of")
        max_tokens, min_tokens = data.get("max_tokens"), data.get("min_tokens", 0)
        if max_tokens is not None and min_tokens > max_tokens:
            raise ValidationError("min_tokens must be less than or equal to max_tokens", "min_tokens")
        bias = data.get("logit_bias") or {}
        if any(not key.lstrip("-").isdigit() for key in bias):
            raise ValidationError("keys must be token ids", "logit_bias")
        if data.get("stream_options") and not data.get("stream"):
            raise ValidationError("stream_options is only allowed when stream is true", "stream_options")


def sampling_params(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON-safe subset of a loaded request that the worker needs."""
    keys = (
        "n",
        "best_of",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "presence_penalty",
        "frequency_penalty",
        "repetition_penalty",
        "seed",
        "stop",
        "stop_token_ids",
        "max_tokens",
        "min_tokens",
        "ignore_eos",
        "detokenize",
        "skip_special_tokens",
        "logit_bias",
    )
    params = {key: data.get(key) for key in keys}
    # OpenAI treats null as "use the default".
    for key, default in (
        ("temperature", 1.0),
        ("top_p", 1.0),
        ("top_k", -1),
        ("min_p", 0.0),
        ("presence_penalty", 0.0),
        ("frequency_penalty", 0.0),
        ("repetition_penalty", 1.0),
    ):
        if params[key] is None:
            params[key] = default
    return params

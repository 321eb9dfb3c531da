"""`POST /completions` request body."""

from __future__ import annotations

from marshmallow import fields, validate

from app.schemas.fields import Prompt
from app.schemas.responses import ChoiceBaseSchema, CompletionBaseSchema
from app.schemas.sampling import COMPLETION, SamplingSchema, ignored_vllm_fields
from app.schemas.tools import ResponseFormatSchema


class CompletionRequestSchema(SamplingSchema, ignored_vllm_fields(COMPLETION)):
    prompt = Prompt(required=True)
    # OpenAI caps this at 5; vLLM (and the provider) allow up to 20.
    logprobs = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=0, max=20))
    echo = fields.Boolean(load_default=False)
    suffix = fields.String(allow_none=True, validate=validate.Length(max=0, error="suffix is not supported"))
    #: vLLM's extension on text completions: the same constrained decoding as chat.
    response_format = fields.Nested(ResponseFormatSchema, allow_none=True)


class CompletionChoiceSchema(ChoiceBaseSchema):
    text = fields.String()


class CompletionSchema(CompletionBaseSchema):
    """The `text_completion` response (with `stream: true`, `text_completion` events over SSE instead)."""

    object = fields.Constant("text_completion")
    choices = fields.List(fields.Nested(CompletionChoiceSchema))

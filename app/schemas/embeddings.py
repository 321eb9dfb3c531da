"""`POST /embeddings` request body."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app.schemas.sampling import EMBEDDING, ignored_vllm_fields
from app.schemas.usage import TokenUsageSchema

#: OpenAI's limit on inputs per request.
MAX_INPUTS = 2048


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in value)


class EmbeddingInput(fields.Field):
    """`input`: a string, a token array, or a list of either; normalised to a list of inputs."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str | list[int]]:
        if isinstance(value, str) or (isinstance(value, list) and value and _is_tokens(value)):
            items = [value]
        elif isinstance(value, list) and value:
            items = value
        elif isinstance(value, list):
            raise ValidationError("must not be an empty list")
        else:
            raise ValidationError("must be a string, an array of token ids, or a list of either")
        if len(items) > MAX_INPUTS:
            raise ValidationError(f"at most {MAX_INPUTS} inputs per request")
        for item in items:
            if not (isinstance(item, str) or _is_tokens(item)):
                raise ValidationError("each input must be a string or an array of token ids")
            if len(item) == 0:
                raise ValidationError("inputs must not be empty")
        return items


class EmbeddingRequestSchema(ignored_vllm_fields(EMBEDDING)):
    class Meta:
        unknown = RAISE

    model = fields.String(validate=validate.Length(min=1, max=256))
    input = EmbeddingInput(required=True)
    encoding_format = fields.String(load_default="float", validate=validate.OneOf(("float", "base64")))
    # The embedded model is not a Matryoshka model: it has one size.
    dimensions = fields.Integer(
        allow_none=True, validate=validate.Equal(None, error="dimensions is not supported by this model")
    )
    user = fields.String(allow_none=True)


class EmbeddingSchema(Schema):
    object = fields.Constant("embedding")
    index = fields.Integer()
    embedding = fields.Raw(metadata={"description": "Floats, or a base64 string (encoding_format=base64)."})


class EmbeddingListSchema(Schema):
    """The response of `POST /embeddings`."""

    object = fields.Constant("list")
    data = fields.List(fields.Nested(EmbeddingSchema))
    model = fields.String()
    usage = fields.Nested(TokenUsageSchema)

"""The model object of `GET /models`: OpenAI's fields plus what a caller needs to size requests."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

STARTED = 1_763_769_600  # a fixed `created`: models here have no creation time


class ModelSchema(Schema):
    id = fields.Function(lambda obj: obj["spec"].id)
    object = fields.Constant("model")
    created = fields.Constant(STARTED)
    owned_by = fields.Constant("inferq")
    kind = fields.Function(lambda obj: "chat" if obj["spec"].kind == "generate" else "embedding")
    context_length = fields.Function(lambda obj: obj["spec"].max_model_len)
    max_model_len = fields.Function(lambda obj: obj["spec"].max_model_len)
    available = fields.Function(lambda obj: obj["available"])
    pricing = fields.Function(lambda obj: _pricing(obj["spec"]))


def _pricing(spec: Any) -> dict[str, float]:
    return {"prompt_per_million": spec.price.prompt, "completion_per_million": spec.price.completion}


class ModelListSchema(Schema):
    """The response of `GET /models`."""

    object = fields.Constant("list")
    data = fields.List(fields.Nested(ModelSchema))

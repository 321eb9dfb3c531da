"""Text completions, under every prefix the provider serves."""

from __future__ import annotations

from flask import Blueprint

from app.api.common import load_body, run_generation
from app.inference import completion_request, resolve_model
from app.schemas.completions import CompletionRequestSchema

blueprint = Blueprint("completions", __name__)
schema = CompletionRequestSchema()


@blueprint.post("/completions")
@blueprint.post("/v1/completions")
@blueprint.post("/engines/<path:model>/completions")
@blueprint.post("/openai/deployments/<path:model>/completions")
def create(model: str | None = None):
    data = load_body(schema)
    spec = resolve_model(data.get("model"), model)
    return run_generation(spec, completion_request(spec, data))

"""Text completions, under every prefix the provider serves."""

from __future__ import annotations

from app.api.common import run_generation
from app.api.routing import GENERATION, GENERATION_ERRORS, Blueprint
from app.job_requests import completion_request, resolve_model
from app.schemas.completions import CompletionRequestSchema, CompletionSchema

blueprint = Blueprint("completions", __name__, tag="Completions", prefixes=GENERATION, description="Text completions.")


@blueprint.post("/completions")
@blueprint.arguments(CompletionRequestSchema)
@blueprint.response(200, CompletionSchema)
@blueprint.streams
@blueprint.errors(*GENERATION_ERRORS)
def create(data: dict, model: str | None = None):
    """Create a text completion (waits for the worker; SSE with `stream: true`)."""
    spec = resolve_model(data.get("model"), model)
    return run_generation(spec, completion_request(spec, data))

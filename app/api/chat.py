"""Chat completions, under every prefix the provider serves."""

from __future__ import annotations

from app.api.common import run_generation
from app.api.routing import GENERATION, GENERATION_ERRORS, Blueprint
from app.job_requests import chat_request, resolve_model
from app.schemas.chat import ChatCompletionRequestSchema, ChatCompletionSchema

blueprint = Blueprint("chat", __name__, tag="Chat", prefixes=GENERATION, description="Chat completions.")


@blueprint.post("/chat/completions")
@blueprint.arguments(ChatCompletionRequestSchema)
@blueprint.response(200, ChatCompletionSchema)
@blueprint.streams
@blueprint.errors(*GENERATION_ERRORS)
def create(data: dict, model: str | None = None):
    """Create a chat completion (waits for the worker; SSE with `stream: true`)."""
    spec = resolve_model(data.get("model"), model)
    return run_generation(spec, chat_request(spec, data))

"""Chat completions, under every prefix the provider serves."""

from __future__ import annotations

from flask import Blueprint

from app.api.common import load_body, run_generation
from app.inference import chat_request, resolve_model
from app.schemas.chat import ChatCompletionRequestSchema

blueprint = Blueprint("chat", __name__)
schema = ChatCompletionRequestSchema()


@blueprint.post("/chat/completions")
@blueprint.post("/v1/chat/completions")
@blueprint.post("/api/v1/chat/completions")
@blueprint.post("/engines/<path:model>/chat/completions")
@blueprint.post("/openai/deployments/<path:model>/chat/completions")
def create(model: str | None = None):
    data = load_body(schema)
    spec = resolve_model(data.get("model"), model)
    return run_generation(spec, chat_request(spec, data))

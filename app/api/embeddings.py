"""Embeddings, under every prefix the provider serves.

The inputs are tokenised here (so an input that does not fit is refused at
submit, by index), then go through the queue like any job: a worker pinned to
the embedding model runs them on its one engine, batched with everyone else's.
"""

from __future__ import annotations

from flask import Blueprint

from app.api.common import load_body, run_generation
from app.inference import embedding_request, resolve_model
from app.schemas.embeddings import EmbeddingRequestSchema

blueprint = Blueprint("embeddings", __name__)
schema = EmbeddingRequestSchema()


@blueprint.post("/embeddings")
@blueprint.post("/v1/embeddings")
@blueprint.post("/engines/<path:model>/embeddings")
@blueprint.post("/openai/deployments/<path:model>/embeddings")
def create(model: str | None = None):
    data = load_body(schema)
    spec = resolve_model(data.get("model"), model, kind="embed")
    return run_generation(spec, embedding_request(spec, data))

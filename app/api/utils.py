"""`POST /utils/token_counter`: how many tokens a prompt or conversation costs on a model.

Counted in the API process with the model's own tokenizer files (the cache
the completion endpoints already use), not by a worker. Measured side by side
(bench/bench_token_counter.py, 2 cores): the cached tokenizer call takes
~60 µs and the whole endpoint ~1.7 ms, while the cheapest job through the
queue takes ~17 ms (~4.5 ms of it outside the task) and needs a live worker.
"""

from __future__ import annotations

from flask import jsonify

from app.api.routing import PLAIN, Blueprint
from app.job_requests import count_tokens, resolve_model
from app.schemas.token_counter import TokenCounterRequestSchema, TokenCounterSchema

blueprint = Blueprint("utils", __name__, tag="Utilities", prefixes=PLAIN, description="Tokenizer utilities.")


@blueprint.post("/utils/token_counter")
@blueprint.arguments(TokenCounterRequestSchema)
@blueprint.response(200, TokenCounterSchema)
@blueprint.errors(400, 401, 404, 415, 429)
def token_counter(data: dict):
    """Count the tokens of a prompt or conversation on a model."""
    spec = resolve_model(data["model"], kind=None)
    return jsonify(
        {
            "total_tokens": count_tokens(spec, data),
            "request_model": data["model"],
            "model_used": spec.id,
            "tokenizer_type": "huggingface_tokenizer",
        }
    )

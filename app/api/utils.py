"""`POST /utils/token_counter`: how many tokens a prompt or conversation costs on a model.

Counted in the API process with the model's own tokenizer files (the cache
the completion endpoints already use), not by a worker. Measured side by side
(bench/bench_token_counter.py, 2 cores): the cached tokenizer call takes
~60 µs and the whole endpoint ~1.7 ms, while the cheapest job through the
queue takes ~17 ms (~4.5 ms of it outside the task) and needs a live worker.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from app.api.common import load_body
from app.inference import count_tokens, resolve_model
from app.schemas.token_counter import TokenCounterRequestSchema

blueprint = Blueprint("utils", __name__)
schema = TokenCounterRequestSchema()


@blueprint.post("/utils/token_counter")
def token_counter():
    data = load_body(schema)
    spec = resolve_model(data["model"], kind=None)
    return jsonify(
        {
            "total_tokens": count_tokens(spec, data),
            "request_model": data["model"],
            "model_used": spec.id,
            "tokenizer_type": "huggingface_tokenizer",
        }
    )

"""`GET /v1/usage`: the calling key's tokens and cost per model over a date range.

Days are UTC. Cost uses each model's `price` in the models file (USD per
million tokens) as configured now; a model no longer configured costs 0.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify

from app.api.routing import PLAIN, Blueprint
from app.context import settings
from app.jobs import owner, service
from app.schemas.usage import UsageQuerySchema, UsageSchema
from tasks import billing
from tasks.models import Price

blueprint = Blueprint("usage", __name__, tag="Usage", prefixes=PLAIN, description="Tokens and cost per key.")
schema = UsageSchema()


def _priced(model: str | None, counts: dict[str, int], price: Price) -> dict[str, Any]:
    prompt = counts["prompt_tokens"] * price.prompt / 1_000_000
    completion = counts["completion_tokens"] * price.completion / 1_000_000
    return {
        "model": model,
        **counts,
        "total_tokens": counts["prompt_tokens"] + counts["completion_tokens"],
        "cost": {
            "prompt": round(prompt, 10),
            "completion": round(completion, 10),
            "total": round(prompt + completion, 10),
        },
    }


@blueprint.get("/usage")
@blueprint.arguments(UsageQuerySchema, location="query")
@blueprint.response(200, UsageSchema)
@blueprint.errors(400, 401, 429)
def get_usage(query: dict):
    """The caller's tokens and cost per model over a date range."""
    specs = settings().models
    per_model = billing.totals(service().redis, owner(), billing.dates(query["start"], query["end"]))
    data = [
        _priced(model, counts, specs[model].price if model in specs else Price())
        for model, counts in sorted(per_model.items())
    ]
    grand = {name: sum(item[name] for item in data) for name in ("requests", "prompt_tokens", "completion_tokens")}
    total = _priced(None, grand, Price())
    total["cost"] = {
        part: round(sum(item["cost"][part] for item in data), 10) for part in ("prompt", "completion", "total")
    }
    return jsonify(schema.dump({"key_id": owner(), **query, "data": data, "total": total}))

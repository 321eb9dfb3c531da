"""`GET /models`: what this deployment serves, in OpenAI's list shape."""

from __future__ import annotations

from flask import current_app, jsonify

from app.api.routing import PLAIN, Blueprint
from app.auth import model_allowed
from app.context import settings
from app.errors import ModelNotFound
from app.schemas.models import ModelListSchema, ModelSchema
from tasks.heartbeat import live_workers

blueprint = Blueprint("models", __name__, tag="Models", prefixes=PLAIN, description="The models served.")
schema = ModelSchema()


def _model_objects() -> list[dict]:
    config = settings()
    client = current_app.extensions["inferq.jobs"].redis
    objects = []
    for spec in config.models.values():
        if not model_allowed(spec.id):
            continue
        try:
            available = live_workers(client, spec.id, config.worker_heartbeat_ttl) > 0
        except Exception:  # noqa: BLE001 - listing models must not depend on Redis
            available = None
        objects.append(schema.dump({"spec": spec, "available": available}))
    return objects


@blueprint.get("/models")
@blueprint.response(200, ModelListSchema)
@blueprint.errors(401, 429)
def list_models():
    """List the models served, each with `available` (a live worker)."""
    return jsonify({"object": "list", "data": _model_objects()})


@blueprint.get("/models/<path:model>")
@blueprint.response(200, ModelSchema)
@blueprint.errors(401, 404, 429)
def retrieve(model: str):
    """Retrieve one model."""
    for item in _model_objects():
        if item["id"] == model:
            return jsonify(item)
    raise ModelNotFound(model)

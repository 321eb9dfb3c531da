"""`GET /models`: what this deployment serves, in OpenAI's list shape."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from app.auth import model_allowed
from app.context import settings
from app.errors import ModelNotFound
from app.schemas.models import ModelSchema
from tasks.heartbeat import live_workers

blueprint = Blueprint("models", __name__)
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
@blueprint.get("/v1/models")
def list_models():
    return jsonify({"object": "list", "data": _model_objects()})


@blueprint.get("/models/<path:model>")
@blueprint.get("/v1/models/<path:model>")
def retrieve(model: str):
    for item in _model_objects():
        if item["id"] == model:
            return jsonify(item)
    raise ModelNotFound(model)

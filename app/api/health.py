"""`GET /health` (the process answers) and `GET /health/ready`: can this API instance do its job right now?

Ready means Redis answers: without it nothing works (no job can be written),
so that is the only 503 - a load balancer should take this instance out of
rotation. A model without a live worker does not make the instance
not-ready: workers are shared by every API instance, so pulling instances
out would not bring a worker back, and the instance still serves the model
list, queue submissions (they wait for a worker) and polls. Each model's
state is in the body (`ready`, `live_workers`) and `status` says `degraded`.
"""

from __future__ import annotations

from flask import current_app, jsonify

from app.api.routing import Blueprint
from app.context import settings
from app.schemas.health import HealthSchema, ReadinessSchema
from tasks.heartbeat import live_workers

blueprint = Blueprint("health", __name__, tag="Operations", prefixes={"": ""}, description="Health checks and metrics.")


@blueprint.get("/health")
@blueprint.response(200, HealthSchema)
@blueprint.public
def health():
    """Liveness: the process answers."""
    return {"status": "ok"}


@blueprint.get("/health/ready")
@blueprint.response(200, ReadinessSchema)
@blueprint.alt_response(503, schema=ReadinessSchema, description="Redis does not answer")
@blueprint.public
def ready():
    """Readiness: Redis answers (503 if not); per model, its live workers."""
    config = settings()
    client = current_app.extensions["inferq.jobs"].redis
    models: dict[str, dict] = {}
    try:
        client.ping()
        for model in config.models:
            count = live_workers(client, model, config.worker_heartbeat_ttl)
            models[model] = {"live_workers": count, "ready": count > 0}
    except Exception:  # noqa: BLE001 - any Redis failure means not ready
        body = {
            "status": "unavailable",
            "redis": False,
            "models": {m: {"live_workers": None, "ready": False} for m in config.models},
        }
        return jsonify(body), 503
    status = "ready" if all(m["ready"] for m in models.values()) else "degraded"
    return jsonify({"status": status, "redis": True, "models": models})

"""`GET /health` (the process answers) and `GET /health/ready`: can this API instance do its job right now?

`GET /metrics/backlog` (and `/metrics/backlog/<model>`) give each model's backlog
as JSON for an autoscaler; like `/metrics` they are for operators only.

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
from app.errors import ModelNotFound
from app.metrics import require_operator
from app.schemas.health import BacklogSchema, BacklogsSchema, HealthSchema, ReadinessSchema
from tasks.backlog import backlogs
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


@blueprint.get("/metrics/backlog")
@blueprint.response(200, BacklogsSchema)
@blueprint.errors(403)
@blueprint.public
def backlog_all():
    """Every model's backlog, for an autoscaler (loopback, or `Authorization: Bearer <METRICS_TOKEN>`)."""
    require_operator()
    config = settings()
    found = backlogs(current_app.extensions["inferq.jobs"], list(config.models))
    return {"models": {b.model: b.to_json() for b in found}}


@blueprint.get("/metrics/backlog/<model>")
@blueprint.response(200, BacklogSchema)
@blueprint.errors(403, 404)
@blueprint.public
def backlog_one(model: str):
    """One model's backlog; KEDA's metrics-api trigger reads `total` (`valueLocation: total`)."""
    require_operator()
    if model not in settings().models:
        raise ModelNotFound(model)
    return backlogs(current_app.extensions["inferq.jobs"], [model])[0].to_json()

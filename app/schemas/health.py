"""`GET /health`, `GET /health/ready` and `GET /metrics/backlog` replies."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class HealthSchema(Schema):
    status = fields.Constant("ok")


class ModelReadinessSchema(Schema):
    live_workers = fields.Integer(allow_none=True)
    ready = fields.Boolean()


class ReadinessSchema(Schema):
    """`ready`: Redis answers and every model has a live worker; `degraded`: Redis answers, some
    model has none (its requests get 503, queue submissions wait); `unavailable`: Redis does not answer."""

    status = fields.String(validate=validate.OneOf(("ready", "degraded", "unavailable")))
    redis = fields.Boolean()
    models = fields.Dict(keys=fields.String(), values=fields.Nested(ModelReadinessSchema))


class BacklogSchema(Schema):
    """One model's backlog (tasks.backlog): scale its workers on `total` over their slots."""

    model = fields.String()
    waiting = fields.Integer(metadata={"description": "messages in the broker, over every priority list"})
    reserved = fields.Integer(metadata={"description": "received by a worker, not started yet"})
    running = fields.Integer(metadata={"description": "in progress on a worker"})
    total = fields.Integer()


class BacklogsSchema(Schema):
    models = fields.Dict(keys=fields.String(), values=fields.Nested(BacklogSchema))

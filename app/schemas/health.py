"""`GET /health` and `GET /health/ready` replies."""

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

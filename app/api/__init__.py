"""HTTP blueprints, one per OpenAI resource."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.api import chat, completions, embeddings, health, models, queue, usage, utils

    for module in (chat, completions, embeddings, health, models, queue, usage, utils):
        app.register_blueprint(module.blueprint)

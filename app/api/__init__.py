"""HTTP blueprints, one per OpenAI resource."""

from __future__ import annotations

from flask import Flask


def register_blueprints(app: Flask) -> None:
    from app.api import chat, completions, models, usage

    for module in (chat, completions, models, usage):
        app.register_blueprint(module.blueprint)

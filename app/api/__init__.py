"""HTTP blueprints, one per OpenAI resource, each registered under its URL prefixes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.openapi import Api


def register_blueprints(api: Api) -> None:
    from app.api import batches, chat, completions, embeddings, files, health, models, queue, responses, usage, utils

    for module in (chat, completions, embeddings, health, models, queue, responses, usage, utils, files, batches):
        api.register_resource(module.blueprint)

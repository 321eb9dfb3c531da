"""The model registry: which models this deployment serves and how.

It lives at the bottom of the import graph (no Flask, no Celery, no vLLM) so the
API, the task layer and the engine all read the same description of a model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EMBEDDED_PREFIX = "embedded:"
KINDS = ("generate", "embed")


@dataclass(frozen=True)
class Price:
    """USD per million tokens."""

    prompt: float = 0.0
    completion: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    id: str
    path: str
    kind: str = "generate"
    max_model_len: int = 2048
    dtype: str = "auto"
    system_message: bool = True
    max_concurrency: int = 32
    price: Price = field(default_factory=Price)
    tokenizer: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def queue(self) -> str:
        return f"model.{self.id}"

    @property
    def local_path(self) -> str:
        """Weights location with `embedded:` resolved to the prepared cache."""
        if self.path.startswith(EMBEDDED_PREFIX):
            from workers.prepare import embedded_model_path

            return str(embedded_model_path(self.path[len(EMBEDDED_PREFIX) :]))
        return os.path.expanduser(self.path)

    @property
    def tokenizer_path(self) -> str:
        return os.path.expanduser(self.tokenizer) if self.tokenizer else self.local_path


def _spec_from_dict(raw: dict[str, Any]) -> ModelSpec:
    data = dict(raw)
    unknown = set(data) - set(ModelSpec.__dataclass_fields__)
    if unknown:
        raise ValueError(f"model {data.get('id')!r}: unknown keys {sorted(unknown)}")
    if data.get("kind", "generate") not in KINDS:
        raise ValueError(f"model {data.get('id')!r}: kind must be one of {KINDS}")
    data["price"] = Price(**(data.get("price") or {}))
    data["engine"] = dict(data.get("engine") or {})
    return ModelSpec(**data)


def load_models(path: str | Path) -> dict[str, ModelSpec]:
    """Read a models file into {id: spec}, failing loudly on anything unexpected."""
    with open(path, encoding="utf-8") as fh:
        document = yaml.safe_load(fh) or {}
    specs = [_spec_from_dict(item) for item in document.get("models", [])]
    if not specs:
        raise ValueError(f"{path}: no models configured")
    by_id = {spec.id: spec for spec in specs}
    if len(by_id) != len(specs):
        raise ValueError(f"{path}: duplicate model ids")
    return by_id

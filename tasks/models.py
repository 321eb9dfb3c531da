"""The model registry: which models this deployment serves and how.

Configuration, not engine code: the API reads it to validate and route, the
worker to start its engine. `embedded:<name>` paths are resolved against the
model cache when the file is read, so nothing later needs to know about it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from workers.structured import ENGINE_CONFIG as STRUCTURED_OUTPUTS

EMBEDDED_PREFIX = "embedded:"
KINDS = ("generate", "embed")
DEVICES = ("cpu", "gpu")


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
    #: A generation running longer than this is aborted and fails (`generation_timeout`),
    #: billed for what it computed; a hung engine cannot hold a job (or its lease) forever.
    time_limit_seconds: float = 600.0
    price: Price = field(default_factory=Price)
    tokenizer: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    #: Per device (`cpu`, `gpu`): engine options over `engine`, where the two builds differ.
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: vLLM's tool-call parser for `tool_choice: auto` (e.g. `hermes`, `llama3_json`); None: auto is refused.
    tool_parser: str | None = None
    #: `path` with `embedded:` resolved (set by load_models).
    local_path: str = ""

    @property
    def queue(self) -> str:
        return f"model.{self.id}"

    @property
    def tokenizer_path(self) -> str:
        return os.path.expanduser(self.tokenizer) if self.tokenizer else self.local_path

    def engine_options(self, device: str = "cpu") -> dict[str, Any]:
        """vLLM's AsyncEngineArgs: the derived ones, then the file's `engine`, then its block for `device`."""
        options: dict[str, Any] = {
            "model": self.local_path,
            "tokenizer": self.tokenizer_path,
            "dtype": self.dtype,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_concurrency,
            "disable_log_stats": True,
            "seed": 0,
        }
        if self.kind == "embed":
            options["runner"] = "pooling"
        else:
            options["structured_outputs_config"] = dict(STRUCTURED_OUTPUTS)
        return {**options, **self.engine, **self.devices.get(device, {})}


def _spec_from_dict(raw: dict[str, Any]) -> ModelSpec:
    data = dict(raw)
    unknown = set(data) - (set(ModelSpec.__dataclass_fields__) - {"local_path"})
    if unknown:
        raise ValueError(f"model {data.get('id')!r}: unknown keys {sorted(unknown)}")
    if data.get("kind", "generate") not in KINDS:
        raise ValueError(f"model {data.get('id')!r}: kind must be one of {KINDS}")
    data["price"] = Price(**(data.get("price") or {}))
    data["engine"] = dict(data.get("engine") or {})
    data["devices"] = {name: dict(options or {}) for name, options in (data.get("devices") or {}).items()}
    unknown_devices = set(data["devices"]) - set(DEVICES)
    if unknown_devices:
        raise ValueError(f"model {data.get('id')!r}: unknown devices {sorted(unknown_devices)}; use {DEVICES}")
    return ModelSpec(**data)


def _resolve(spec: ModelSpec, cache_dir: str) -> ModelSpec:
    if spec.path.startswith(EMBEDDED_PREFIX):
        return replace(spec, local_path=str(Path(cache_dir) / spec.path[len(EMBEDDED_PREFIX) :]))
    return replace(spec, local_path=os.path.expanduser(spec.path))


def load_models(path: str | Path, cache_dir: str) -> dict[str, ModelSpec]:
    """Read a models file into {id: spec}, failing loudly on anything unexpected."""
    with open(path, encoding="utf-8") as fh:
        document = yaml.safe_load(fh) or {}
    specs = [_resolve(_spec_from_dict(item), cache_dir) for item in document.get("models", [])]
    if not specs:
        raise ValueError(f"{path}: no models configured")
    by_id = {spec.id: spec for spec in specs}
    if len(by_id) != len(specs):
        raise ValueError(f"{path}: duplicate model ids")
    return by_id

"""A batch as the service hands it out: its Redis record, typed, and OpenAI's batch object."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("validating", "failed", "in_progress", "finalizing", "completed", "expired", "cancelling", "cancelled")
ACTIVE = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
#: Input `url`/`endpoint` -> the job request's endpoint.
ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/embeddings": "embedding"}
#: Batch lines wait behind every interactive and queued job of a default priority (0 runs first, 9 last).
BATCH_PRIORITY = 9
#: Most lines in one input file (OpenAI's limit).
MAX_LINES = 50_000
_TIMES = ("in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at")


@dataclass
class Batch:
    id: str
    owner: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: float
    expires_at: float
    metadata: dict[str, str] | None = None
    times: dict[str, float] = field(default_factory=dict)
    errors: list[dict[str, Any]] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    model: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Lines handed to the queue so far, and where the next one starts in the prepared file.
    fed: int = 0
    fed_offset: int = 0
    #: The validating API process's last sign of life (Redis's clock).
    heartbeat: float = 0.0
    #: Why the runner stopped feeding before the end: '' or 'expired'.
    stop: str = ""

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> Batch:
        f = {key.decode(): value.decode() for key, value in raw.items()}

        def integer(name: str) -> int:
            return int(f.get(name) or 0)

        return cls(
            id=f["id"],
            owner=f["owner"],
            endpoint=f["endpoint"],
            input_file_id=f["input_file_id"],
            completion_window=f["completion_window"],
            status=f["status"],
            created_at=float(f["created_at"]),
            expires_at=float(f["expires_at"]),
            metadata=json.loads(f["metadata"]) if f.get("metadata") else None,
            times={name: float(f[name]) for name in _TIMES if f.get(name)},
            errors=json.loads(f["errors"]) if f.get("errors") else None,
            output_file_id=f.get("output_file_id") or None,
            error_file_id=f.get("error_file_id") or None,
            model=f.get("model") or None,
            total=integer("total"),
            completed=integer("completed"),
            failed=integer("failed"),
            prompt_tokens=integer("prompt_tokens"),
            completion_tokens=integer("completion_tokens"),
            fed=integer("fed"),
            fed_offset=integer("fed_offset"),
            heartbeat=float(f.get("heartbeat") or 0),
            stop=f.get("stop", ""),
        )

    def to_json(self) -> dict[str, Any]:
        """OpenAI's batch object."""
        usage = None
        if self.prompt_tokens or self.completion_tokens or self.status not in ACTIVE:
            usage = {
                "input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": self.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            }
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.model,
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created_at),
            "expires_at": int(self.expires_at),
            **{name: int(self.times[name]) if name in self.times else None for name in _TIMES},
            "request_counts": {"total": self.total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
            "usage": usage,
        }


def new_batch_id() -> str:
    return "batch_" + secrets.token_hex(16)


def line_job_id(batch_id: str, index: int) -> str:
    """The job of one line, the same every time it is fed: a re-feed after a crash finds it instead of adding one."""
    return "job_" + hashlib.sha256(f"{batch_id}:{index}".encode()).hexdigest()[:32]


def output_file_id(batch_id: str, kind: str) -> str:
    """The output (or error) file's id, the same on every try of the finalization."""
    return "file-" + hashlib.sha256(f"{batch_id}:{kind}".encode()).hexdigest()[:24]


def prepared_name(batch_id: str) -> str:
    return f"batches/{batch_id}/prepared.jsonl"


def chunk_name(batch_id: str, token: str, kind: str) -> str:
    return f"batches/{batch_id}/chunks/{token}.{kind}.jsonl"


def batch_dir(batch_id: str) -> str:
    return f"batches/{batch_id}"

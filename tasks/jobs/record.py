"""A job as the service hands it out: the stored record, typed.

The record is the source of truth for a job (never Celery's state, which says
PENDING for ids it has never seen). Its request is the typed request the API
built, so `stream`, `endpoint`, `model`, `n`... are read from one place.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson

from tasks.protocol.requests import JobRequest, request_from_json

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "expired")
DEFAULT_PRIORITY = 5


def encode_field(value: Any) -> bytes:
    """A result, error or usage as the record keeps it: compact JSON, UTF-8.

    orjson, because an embeddings body holds ~100 000 floats and the stdlib
    encoder spends 15x longer on them (bench/bench_embeddings.py). It refuses
    what the stdlib still writes (a lone surrogate a tool call decoded from
    the model's text, an integer past 64 bits): those take the stdlib's path.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class Job:
    id: str
    owner: str
    model: str
    status: str
    #: None once a delivered synchronous job was trimmed to what billing keeps.
    request: JobRequest | None
    priority: int = DEFAULT_PRIORITY
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    expires_at: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    error_status: int | None = None
    usage: dict[str, int] | None = None
    #: The worker running (or that last ran) it, `<model>@<host>-<pid>`.
    worker: str | None = None
    #: Listed jobs (the queue routes') keep everything for the retention time; the
    #: others (synchronous calls) are trimmed once their caller has the answer.
    listed: bool = False
    #: Known only right after submission (answered by the same round trip).
    position: int | None = None
    #: chat, completion or embedding (kept when the request is not).
    endpoint: str = ""
    #: What the submitting route echoes back when it renders the job (tasks.jobs.submission.submit).
    meta: dict[str, Any] | None = None
    #: The stored body as the worker wrote it (JSON text): a synchronous reply sends it on undecoded.
    result_json: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.endpoint and self.request is not None:
            self.endpoint = self.request.endpoint

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes], *, decode_result: bool = True) -> Job:
        """`decode_result=False` leaves `result` unset and only `result_json`: an embeddings body is
        megabytes of floats, and a reply that sends it on need not decode it."""
        fields = {key.decode(): value.decode() for key, value in raw.items()}

        def number(name: str) -> float | None:
            return float(fields[name]) if fields.get(name) else None

        def document(name: str) -> Any:
            return json.loads(fields[name]) if fields.get(name) else None

        return cls(
            id=fields["id"],
            owner=fields["owner"],
            model=fields["model"],
            status=fields["status"],
            request=request_from_json(json.loads(fields["request"])) if fields.get("request") else None,
            priority=int(fields.get("priority") or DEFAULT_PRIORITY),
            attempts=int(fields.get("attempts") or 0),
            created_at=float(fields["created_at"]),
            started_at=number("started_at"),
            completed_at=number("completed_at"),
            expires_at=number("expires_at"),
            result=document("result") if decode_result else None,
            result_json=fields.get("result") or None,
            error=document("error"),
            error_status=int(fields["error_status"]) if fields.get("error_status") else None,
            usage=document("usage"),
            worker=fields.get("worker"),
            listed=fields.get("listed") == "1",
            endpoint=fields.get("endpoint", ""),
            meta=document("meta"),
        )


def new_job_id() -> str:
    """Unguessable: 128 random bits."""
    return "job_" + secrets.token_hex(16)


@dataclass(frozen=True)
class Idempotency:
    """An `Idempotency-Key` and the body it came with, both hashed: neither is stored as sent."""

    key_digest: str
    body_digest: str

    @classmethod
    def of(cls, key: str, body: bytes) -> Idempotency:
        return cls(hashlib.sha256(key.encode()).hexdigest(), hashlib.sha256(body).hexdigest())


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one attempt of a job: only this attempt may finish it."""

    job_id: str
    attempt: int
    owner: str
    request: JobRequest

"""Job records and job event streams in Redis: the source of truth for every job.

A job is a hash `inferq:job:<id>` (owner, model, status, timestamps, request,
result or error) and a stream `inferq:job:<id>:events` the worker appends to:
`delta` events while it generates (only when someone will read them) and one
terminal `end` event. Waiters block on the stream, so nobody polls Redis and a
result written before the waiter arrived is never missed.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis

from tasks import usage as usage_log

PREFIX = "inferq"
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
STATUSES = ("queued", "in_progress", *sorted(TERMINAL))


def new_job_id() -> str:
    """Unguessable: 128 random bits."""
    return "job_" + secrets.token_hex(16)


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def events_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in raw.items():
        key = key.decode() if isinstance(key, bytes) else key
        value = value.decode() if isinstance(value, bytes) else value
        record[key] = value
    for key in ("request", "result", "error", "usage"):
        if record.get(key):
            record[key] = json.loads(record[key])
    for key in ("created_at", "started_at", "completed_at", "expires_at"):
        if record.get(key):
            record[key] = float(record[key])
    for key in ("stream", "error_status", "attempts", "priority"):
        if key in record and record[key] != "":
            record[key] = int(record[key])
    return record


class JobStore:
    def __init__(self, client: redis.Redis, retention_seconds: int) -> None:
        self.redis = client
        self.retention = int(retention_seconds)

    # -- written by the API --------------------------------------------------
    def create(
        self,
        *,
        job_id: str,
        owner: str,
        model: str,
        endpoint: str,
        request: dict[str, Any],
        stream: bool,
        priority: int = 0,
    ) -> dict[str, Any]:
        now = time.time()
        record = {
            "id": job_id,
            "owner": owner,
            "model": model,
            "endpoint": endpoint,
            "status": "queued",
            "created_at": now,
            "stream": int(stream),
            "priority": priority,
            "attempts": 0,
            "request": _dumps(request),
        }
        pipe = self.redis.pipeline()
        pipe.hset(job_key(job_id), mapping=record)
        # Jobs that never finish still go away eventually, after the retention.
        pipe.expire(job_key(job_id), self.retention + 7 * 24 * 3600)
        pipe.execute()
        record["request"] = request
        return record

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(job_key(job_id))
        return _decode(raw) if raw else None

    def status(self, job_id: str) -> str | None:
        value = self.redis.hget(job_key(job_id), "status")
        return value.decode() if isinstance(value, bytes) else value

    # -- written by the worker -----------------------------------------------
    def start(self, job_id: str) -> dict[str, Any] | None:
        """Mark a job in progress unless it already ended; return the record if it should run."""
        record = self.get(job_id)
        if record is None or record["status"] in TERMINAL:
            return None
        pipe = self.redis.pipeline()
        pipe.hset(job_key(job_id), mapping={"status": "in_progress", "started_at": time.time()})
        pipe.hincrby(job_key(job_id), "attempts", 1)
        pipe.execute()
        return record

    def append_delta(self, job_id: str, payload: dict[str, Any]) -> None:
        self.redis.xadd(events_key(job_id), {"type": "delta", "data": _dumps(payload)})

    def finish(
        self,
        job_id: str,
        *,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        error_status: int | None = None,
        usage: dict[str, Any] | None = None,
    ) -> None:
        """Write the terminal state and wake every waiter, atomically."""
        fields: dict[str, Any] = {"status": status, "completed_at": time.time()}
        if result is not None:
            fields["result"] = _dumps(result)
        if error is not None:
            fields["error"] = _dumps(error)
            fields["error_status"] = error_status or 500
        if usage is not None:
            fields["usage"] = _dumps(usage)
            # Billed before the end event wakes the client, and once per job (tasks.usage).
            usage_log.record(self.redis, job_key(job_id), usage, fields["completed_at"])
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(job_key(job_id), mapping=fields)
        pipe.expire(job_key(job_id), self.retention)
        pipe.xadd(events_key(job_id), {"type": "end", "status": status})
        pipe.expire(events_key(job_id), self.retention)
        pipe.execute()

    # -- read by waiters -----------------------------------------------------
    def read_events(self, job_id: str, last_id: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply = self.redis.xread({events_key(job_id): last_id}, block=block_ms)
        events = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                entry_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                decoded = {
                    (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                    for k, v in fields.items()
                }
                events.append((entry_id, decoded))
        return events

"""`Idempotency-Key`: the same key from the same client returns the same job, which runs once.

The key is scoped to the caller, so two clients cannot collide or probe each
other's keys; reusing a key with a different body is a client bug, answered
409 rather than silently returning an unrelated job.
"""

from __future__ import annotations

import hashlib

from app import jobs
from app.errors import APIError, InvalidRequest
from tasks.jobstore import PREFIX

MAX_KEY_LENGTH = 255


def _key(owner: str, idempotency_key: str) -> str:
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
    return f"{PREFIX}:idem:{owner}:{digest}"


def _fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _check(key: str | None) -> None:
    if key is not None and not (0 < len(key) <= MAX_KEY_LENGTH):
        raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.", param="Idempotency-Key")


def replay(owner: str, idempotency_key: str | None, body: bytes) -> str | None:
    """The job id an earlier request with this key created, if any."""
    _check(idempotency_key)
    if not idempotency_key:
        return None
    stored = jobs.store().redis.get(_key(owner, idempotency_key))
    if stored is None:
        return None
    job_id, fingerprint = stored.decode().split(" ", 1)
    if fingerprint != _fingerprint(body):
        raise APIError(
            "This Idempotency-Key was already used with a different request body.",
            status=409,
            param="Idempotency-Key",
            code="idempotency_key_reused",
        )
    return job_id


def remember(owner: str, idempotency_key: str | None, body: bytes, job_id: str) -> str:
    """Bind the key to the job; if a concurrent request won the race, return its job instead."""
    if not idempotency_key:
        return job_id
    store = jobs.store()
    key = _key(owner, idempotency_key)
    if store.redis.set(key, f"{job_id} {_fingerprint(body)}", nx=True, ex=store.retention):
        return job_id
    # Lost the race: the other request's job is the one; cancel ours before it runs.
    from tasks.cancellation import request_cancel

    request_cancel(store, job_id)
    winner = store.redis.get(key)
    return winner.decode().split(" ", 1)[0] if winner else job_id

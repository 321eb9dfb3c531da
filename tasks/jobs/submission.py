"""The API's side of the job service: submit within the key's caps, cancel, collect.

A job is accepted only when Redis has room for it and its key is within its
caps (open jobs; callers holding a connection), both checked inside the one
step that writes it. A refusal is a 429 (the key's caps) or a 503 (Redis
near `maxmemory`) with a Retry-After, never a half-written job.
"""

from __future__ import annotations

import json
import math
import time
from typing import TYPE_CHECKING, Any

import redis

from tasks.jobs.policy import STREAM_GRACE_SECONDS
from tasks.jobs.record import DEFAULT_PRIORITY, Idempotency, Job, new_job_id
from tasks.protocol.errors import APIError, NotFound, ServiceUnavailable
from tasks.protocol.requests import JobRequest

if TYPE_CHECKING:
    from tasks.jobs.service import JobService

#: How long one process trusts its last look at Redis's memory.
MEMORY_CHECK_SECONDS = 1.0
#: Retry-After bounds for a refused submission.
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 1, 3600
#: What cancel() answers.
NOT_FOUND, ALREADY_ENDED, CANCELLED_QUEUED, CANCELLED_RUNNING = 0, -1, 1, 2


class StoreFull(ServiceUnavailable):
    code = "server_busy"


class Submission:
    """Mixed into JobService (tasks.jobs.service), which provides the scripts and the policy."""

    def submit(
        self: JobService,
        *,
        owner: str,
        request: JobRequest,
        priority: int = DEFAULT_PRIORITY,
        expires_in: float | None = None,
        listed: bool = False,
        idempotency: Idempotency | None = None,
        wait_seconds: float | None = None,
        endpoint: str | None = None,
        meta: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Job:
        """Queue a job: its record and its broker message, in one step.

        `listed` jobs appear in the owner's job list and keep everything for the
        retention time. `wait_seconds`: the caller holds a connection this long
        at most (a synchronous request or a stream), which counts against the
        key's waiting cap until it collects or releases the job. With an
        idempotency key, an earlier job with the same key and body is returned
        instead (a different body is a 409), and of two racing submissions one wins.
        With `job_id` (a batch line's, derived from its batch and index), a job
        that already exists under that id is returned as it is: submitting twice adds nothing.
        (A message Redis loses later, with an AOF tail, is re-sent by the
        reconciler's orphan sweep.) `endpoint` names the route that renders the
        job when it is not the request's own (`responses`: a chat request shown as a
        Response object), and `meta` is what that route echoes back (kept in the record).
        """
        if idempotency is not None:
            earlier = self.replay(owner, idempotency)
            if earlier is not None:
                return earlier
        self.check_memory()
        job, fresh = self._write(owner, request, priority, expires_in, listed, wait_seconds, endpoint, meta, job_id)
        if not fresh:
            return job  # it existed already: its message was sent by whoever wrote it
        if idempotency is not None and not self._remember(owner, idempotency, job.id):
            self.cancel(job)  # a concurrent submission with this key won: its worker skips ours
            return self.replay(owner, idempotency) or job
        return job

    def _write(
        self: JobService,
        owner: str,
        request: JobRequest,
        priority: int,
        expires_in: float | None,
        listed: bool,
        wait_seconds: float | None,
        endpoint: str | None = None,
        meta: dict[str, Any] | None = None,
        job_id: str | None = None,
    ) -> tuple[Job, bool]:
        """The job, and whether this call wrote it (False: one with `job_id` existed)."""
        job_id, k, policy = job_id or new_job_id(), self.keys, self.policy
        job = Job(job_id, owner, request.model, "queued", request, priority, listed=listed, meta=meta)
        job.endpoint = endpoint or request.endpoint
        keys = [
            k.job(job_id),
            k.queue(request.model),
            k.deadlines,
            k.owner_jobs(owner),
            k.tombstone(job_id),
            k.stats,
            k.open_jobs(owner),
            k.waiting(owner),
        ]
        args = [
            job_id,
            owner,
            request.model,
            priority,
            _compact(request.to_json()),
            job.endpoint,
            "" if expires_in is None else expires_in,
            int(listed),
            policy.retention + TOMBSTONE_EXTRA,
            policy.max_open_per_key,
            policy.max_waiting_per_key,
            "" if wait_seconds is None else wait_seconds,
            "" if meta is None else _compact(meta),
        ]
        if self.broker is not None:
            message = self.broker.message(job)
            keys.append(message.list_key)
            args.append(message.payload)
        reply = self._guarded(self._submit, keys, args)
        if reply[0] == b"exists":
            return self.get(job_id) or Job(job_id, owner, request.model, "expired", request), False
        if reply[0] != b"ok":
            raise self._over_cap(reply[0].decode(), int(reply[1]), request.model)
        created = job.created_at = float(reply[1])
        job.expires_at = created + expires_in if expires_in is not None else None
        job.position = int(reply[2]) if reply[2] is not None else None
        return job, True

    def _over_cap(self: JobService, which: str, count: int, model: str) -> APIError:
        cap = self.policy.max_open_per_key if which == "open_full" else self.policy.max_waiting_per_key
        retry = self.drain_seconds(model, count - cap + 1)
        what = "unfinished jobs" if which == "open_full" else "requests waiting for an answer (or streaming)"
        return APIError(
            f"This key already has {count} {what}, its limit; retry after some of them finish.",
            status=429,
            type="requests",
            code="too_many_open_jobs" if which == "open_full" else "too_many_concurrent_requests",
            headers={"Retry-After": str(retry)},
        )

    def drain_seconds(self: JobService, model: str, jobs: int) -> int:
        """How long `jobs` of this model take to finish at its measured rate: a Retry-After."""
        rate = self.throughput(model)
        if not rate:
            return 10
        return max(RETRY_MIN_SECONDS, min(RETRY_MAX_SECONDS, math.ceil(max(jobs, 1) / rate)))

    def check_memory(self: JobService) -> None:
        """503 while Redis is above the high-water share of its maxmemory: workers still have room to finish."""
        now = time.monotonic()
        if now - self._memory_checked_at >= MEMORY_CHECK_SECONDS:
            # Marked before the read: a burst of concurrent submits sends one INFO, not one each.
            self._memory_checked_at = now
            info = self.redis.info("memory")
            limit, used = int(info.get("maxmemory") or 0), int(info.get("used_memory") or 0)
            self._memory_full = 0 < self.policy.memory_high_water <= 1 and limit > 0
            self._memory_full = self._memory_full and used >= limit * self.policy.memory_high_water
        if self._memory_full:
            raise _store_full()

    def _guarded(self: JobService, script: Any, keys: list[str], args: list[Any]) -> Any:
        """Run a writing step; Redis refusing writes at maxmemory is a 503, not a 500."""
        try:
            return self.replicated(script, keys, args)
        except redis.ResponseError as exc:
            if str(exc).startswith("OOM"):
                self._memory_full, self._memory_checked_at = True, time.monotonic()
                raise _store_full() from exc
            raise

    def replay(self: JobService, owner: str, idempotency: Idempotency) -> Job | None:
        """The job an earlier submission with this key created; 409 if that one had another body."""
        stored = self.redis.get(self.keys.idempotency(owner, idempotency.key_digest))
        if stored is None:
            return None
        job_id, fingerprint = stored.decode().split(" ", 1)
        if fingerprint != idempotency.body_digest:
            raise APIError(
                "This Idempotency-Key was already used with a different request body.",
                status=409,
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return self.owned(job_id, owner)

    def _remember(self: JobService, owner: str, idempotency: Idempotency, job_id: str) -> bool:
        key = self.keys.idempotency(owner, idempotency.key_digest)
        value = f"{job_id} {idempotency.body_digest}"
        return bool(self.redis.set(key, value, nx=True, ex=self.policy.retention))

    def owned(self: JobService, job_id: str, owner: str) -> Job:
        """The owner's job; another key's job is indistinguishable from one that does not exist."""
        job = self.get(job_id)
        if job is None or job.owner != owner:
            if job is None and self.redis.get(self.keys.tombstone(job_id)) == owner.encode():
                hours = self.policy.retention / 3600
                raise NotFound(
                    f"The job {job_id} finished more than {hours:g} hours ago and has expired from retention.",
                    code="job_expired",
                )
            raise NotFound(f"No job with id {job_id}.", code="job_not_found")
        if job.status == "queued" and job.expires_at is not None and self.end_queued(job, "expired", if_overdue=True):
            job = self.get(job_id) or job  # the reconciler would expire it within seconds; answer truthfully now
        return job

    def cancel(self: JobService, job: Job) -> int:
        """Cancel whatever the state; a running job is aborted by its worker (told on the cancel channel)."""
        outcome = int(self._cancel(keys=self._queued_keys(job.id, job.model, job.owner), args=self._end_args(job.id)))
        if outcome == CANCELLED_RUNNING:
            self.redis.publish(self.keys.cancel_channel, job.id)
        return outcome

    def end_queued(self: JobService, job: Job, status: str, *, if_overdue: bool = False) -> bool:
        """Expire (or cancel) a job that has not started; wakes its waiters."""
        return self.end_ids(job.id, job.model, job.owner, status, if_overdue=if_overdue)

    def end_ids(
        self: JobService, job_id: str, model: str, owner: str, status: str, *, if_overdue: bool = False
    ) -> bool:
        args = [*self._end_args(job_id), status, int(if_overdue)]
        return bool(self._end_queued(keys=self._queued_keys(job_id, model, owner), args=args))

    def _queued_keys(self: JobService, job_id: str, model: str, owner: str) -> list[str]:
        k = self.keys
        return [k.job(job_id), k.events(job_id), k.queue(model), k.deadlines, k.stats, k.open_jobs(owner)]

    def _end_args(self: JobService, job_id: str) -> list[Any]:
        return [job_id, self.policy.retention, self.policy.sync_retention]

    def collect(self: JobService, job: Job, *, decode_result: bool = True) -> Job | None:
        """The ended job, read once by its synchronous caller; then only billing's part of it is kept."""
        raw = self._collect(keys=self._collect_keys(job), args=[job.id, STREAM_GRACE_SECONDS])
        if not raw:
            return None
        return Job.from_hash(dict(zip(raw[::2], raw[1::2], strict=True)), decode_result=decode_result)

    def _collect_keys(self: JobService, job: Job) -> list[str]:
        return [self.keys.job(job.id), self.keys.events(job.id), self.keys.waiting(job.owner)]

    def delete(self: JobService, job: Job) -> bool:
        """Forget an ended job (its owner asked): False while it has not ended (cancel it first)."""
        k = self.keys
        keys = [k.job(job.id), k.events(job.id), k.owner_jobs(job.owner), k.tombstone(job.id)]
        return bool(self._delete(keys=keys, args=[job.id]))

    def release(self: JobService, job: Job) -> None:
        """The caller stopped waiting without collecting (it timed out, or went away)."""
        self._release(keys=[self.keys.waiting(job.owner)], args=[job.id])


def _store_full() -> StoreFull:
    return StoreFull(
        "The job store is nearly full; new jobs are refused until running ones finish. Retry later.",
        headers={"Retry-After": "5"},
    )


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


#: Finished jobs leave a tombstone this much longer, so a poll says "expired", not "never existed".
TOMBSTONE_EXTRA = 30 * 24 * 3600

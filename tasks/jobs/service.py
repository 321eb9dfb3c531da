"""The job service: every job state change and every job key, in one class.

The API submits, reads, cancels and waits; the worker claims, streams and
finishes; the reconciler re-queues and expires. Nothing else touches a job's
keys. A job is a hash (tasks.jobs.record) plus a stream of events the worker
appends to: `delta` events while it generates (only when someone streams)
and one terminal `end` event, on which waiters block.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

import redis

from tasks.jobs import scripts
from tasks.jobs.reads import THROUGHPUT_WINDOW_SECONDS, JobReads
from tasks.jobs.record import DEFAULT_PRIORITY, Claim, Idempotency, Job, new_job_id
from tasks.keyspace import KEYS, Keyspace
from tasks.protocol.errors import APIError, NotFound
from tasks.protocol.requests import JobRequest, request_from_json
from workers.outputs import Delta

#: Finished jobs leave a tombstone this much longer, so a poll says "expired", not "never existed".
TOMBSTONE_EXTRA = 30 * 24 * 3600
#: Tokens-per-minute counters outlive their minute by this much (the limit looks one minute back).
TPM_TTL_SECONDS = 180
#: What cancel() answers.
NOT_FOUND, ALREADY_ENDED, CANCELLED_QUEUED, CANCELLED_RUNNING = 0, -1, 1, 2


def dispatch_score(priority: int, at: float) -> float:
    return priority * scripts.PRIORITY_SCALE + int(at * 1000)


def utc_day(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).date().isoformat()


class JobService(JobReads):
    """`send` puts a job's message on the broker (tasks.dispatch); the API and the reconciler pass one."""

    def __init__(
        self,
        client: redis.Redis,
        retention_seconds: int,
        send: Callable[[Job], None] | None = None,
        keys: Keyspace = KEYS,
    ) -> None:
        super().__init__(client, keys)
        self.retention = int(retention_seconds)
        self.send = send
        self._claim = client.register_script(scripts.CLAIM)
        self._finish = client.register_script(scripts.FINISH)
        self._cancel = client.register_script(scripts.CANCEL)
        self._end_queued = client.register_script(scripts.END_QUEUED)
        self._requeue = client.register_script(scripts.REQUEUE)

    # -- the API -----------------------------------------------------------------
    def submit(
        self,
        *,
        owner: str,
        request: JobRequest,
        priority: int = DEFAULT_PRIORITY,
        expires_in: float | None = None,
        listed: bool = False,
        idempotency: Idempotency | None = None,
    ) -> Job:
        """Queue a job: its record, then its broker message, so no worker sees a job without a record.

        `listed` jobs appear in the owner's job list. With an idempotency key,
        an earlier job submitted with the same key and body is returned instead
        (a different body is a 409), and of two racing submissions one wins.
        """
        if idempotency is not None:
            earlier = self.replay(owner, idempotency)
            if earlier is not None:
                return earlier
        job = self._write(owner, request, priority, expires_in, listed)
        if idempotency is not None and not self._remember(owner, idempotency, job.id):
            self.cancel(job)  # a concurrent submission with this key won: ours never runs
            return self.replay(owner, idempotency) or job
        if self.send is not None:
            self.send(job)
        return job

    def _write(self, owner: str, request: JobRequest, priority: int, expires_in: float | None, listed: bool) -> Job:
        now, job_id, keys = time.time(), new_job_id(), self.keys
        job = Job(job_id, owner, request.model, "queued", request, priority, 0, now)
        job.expires_at = now + expires_in if expires_in is not None else None
        record = {
            "id": job_id,
            "owner": owner,
            "model": request.model,
            "status": "queued",
            "created_at": now,
            "priority": priority,
            "attempts": 0,
            "request": json.dumps(request.to_json(), separators=(",", ":")),
            **({"expires_at": job.expires_at} if job.expires_at is not None else {}),
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(keys.job(job_id), mapping=record)
        pipe.expire(keys.job(job_id), self.retention + TOMBSTONE_EXTRA)  # even a job that never ends goes away
        pipe.zadd(keys.queue(request.model), {job_id: dispatch_score(priority, now)})
        if job.expires_at is not None:
            pipe.zadd(keys.deadlines, {job_id: job.expires_at})
        if listed:
            pipe.zadd(keys.owner_jobs(owner), {job_id: now})
        pipe.set(keys.tombstone(job_id), owner, ex=self.retention + TOMBSTONE_EXTRA)
        pipe.hincrby(keys.stats, f"submitted:{request.model}", 1)
        pipe.zrank(keys.queue(request.model), job_id)
        job.position = pipe.execute()[-1]
        return job

    def replay(self, owner: str, idempotency: Idempotency) -> Job | None:
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

    def _remember(self, owner: str, idempotency: Idempotency, job_id: str) -> bool:
        key = self.keys.idempotency(owner, idempotency.key_digest)
        return bool(self.redis.set(key, f"{job_id} {idempotency.body_digest}", nx=True, ex=self.retention))

    def owned(self, job_id: str, owner: str) -> Job:
        """The owner's job; another key's job is indistinguishable from one that does not exist."""
        job = self.get(job_id)
        if job is None or job.owner != owner:
            if job is None and self.redis.get(self.keys.tombstone(job_id)) == owner.encode():
                hours = self.retention / 3600
                raise NotFound(
                    f"The job {job_id} finished more than {hours:g} hours ago and has expired from retention.",
                    code="job_expired",
                )
            raise NotFound(f"No job with id {job_id}.", code="job_not_found")
        if job.status == "queued" and job.expires_at is not None and job.expires_at < time.time():
            # The reconciler would expire it within seconds; answer truthfully now.
            self.end_queued(job, "expired")
            job = self.get(job_id) or job
        return job

    def cancel(self, job: Job) -> int:
        """Cancel whatever the state; a running job is aborted by its worker (told on the cancel channel)."""
        keys = [*self._queued_keys(job.id, job.model)]
        outcome = int(self._cancel(keys=keys, args=[time.time(), self.retention, job.id]))
        if outcome == CANCELLED_RUNNING:
            self.redis.publish(self.keys.cancel_channel, job.id)
        return outcome

    def end_queued(self, job: Job, status: str) -> bool:
        """Expire (or cancel) a job that has not started; wakes its waiters."""
        keys = self._queued_keys(job.id, job.model)
        return bool(self._end_queued(keys=keys, args=[time.time(), self.retention, job.id, status]))

    def _queued_keys(self, job_id: str, model: str) -> list[str]:
        k = self.keys
        return [k.job(job_id), k.events(job_id), k.queue(model), k.deadlines, k.stats]

    # -- the worker ----------------------------------------------------------------
    def claim(self, job_id: str, model: str) -> Claim | None:
        """Start an attempt of a queued job; None if it must not run (running elsewhere, ended, expired)."""
        keys = [*self._queued_keys(job_id, model), self.keys.leases]
        reply = self._claim(keys=keys, args=[time.time(), self.retention, job_id])
        if reply[0] != b"start":
            return None
        return Claim(job_id, int(reply[1]), reply[3].decode(), request_from_json(json.loads(reply[2])))

    def is_cancelled(self, job_id: str) -> bool:
        return self.redis.hget(self.keys.job(job_id), "status") == b"cancelled"

    def append_delta(self, job_id: str, delta: Delta) -> None:
        self.redis.xadd(self.keys.events(job_id), {"type": "delta", "data": json.dumps(delta.to_json())})

    def emitted(self, job_id: str) -> int:
        """Events already in the job's stream (a rerun of a streamed job cannot take them back)."""
        return int(self.redis.xlen(self.keys.events(job_id)))

    def finish(
        self,
        claim: Claim,
        status: str,
        *,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        error_status: int | None = None,
        usage: dict[str, int] | None = None,
    ) -> bool:
        """End the claimed attempt, bill it and wake every waiter, atomically, once per job.

        A job cancelled while it ran stays `cancelled`; only its usage is added.
        False when another attempt owns the job now.
        """
        now, k = time.time(), self.keys
        fields: dict[str, Any] = {"status": status, "completed_at": now}
        for name, value in (("result", result), ("error", error), ("usage", usage)):
            if value is not None:
                fields[name] = json.dumps(value, separators=(",", ":"))
        if error is not None:
            fields["error_status"] = error_status or 500
        usage = usage or {}
        keys = [
            k.job(claim.job_id),
            k.events(claim.job_id),
            k.leases,
            k.done(claim.request.model),
            k.stats,
            k.usage(claim.owner, utc_day(now)),
            k.tpm(claim.owner, int(now // 60)),
        ]
        args = [
            claim.attempt,
            now,
            self.retention,
            json.dumps({name: str(value) for name, value in fields.items()}),
            claim.job_id,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            TPM_TTL_SECONDS,
            THROUGHPUT_WINDOW_SECONDS,
        ]
        return bool(self._finish(keys=keys, args=args))

    def renew_leases(self, job_ids: list[str]) -> None:
        if job_ids:
            self.redis.zadd(self.keys.leases, dict.fromkeys(job_ids, time.time()))

    # -- the reconciler --------------------------------------------------------------
    def stale_leases(self, older_than: float) -> tuple[list[str], float]:
        """Jobs whose lease was last renewed before now - `older_than`, and that cut-off."""
        before = time.time() - older_than
        return [j.decode() for j in self.redis.zrangebyscore(self.keys.leases, "-inf", before)], before

    def requeue(self, job_id: str, stale_before: float) -> Job | None:
        """Put a dead worker's job back in its queue and re-send its message; None if it was not stale after all."""
        job = self.get(job_id)
        if job is None:
            self.redis.zrem(self.keys.leases, job_id)
            return None
        k = self.keys
        keys = [k.job(job_id), k.queue(job.model), k.leases, k.events(job_id)]
        if self._requeue(keys=keys, args=[job_id, time.time(), stale_before, self.retention]) != 1:
            return None
        if self.send is not None:
            self.send(job)
        return job

    def overdue(self) -> list[Job]:
        """Queued jobs past their `expires_in`; ids whose job is gone or started are dropped from the index."""
        jobs = []
        for raw in self.redis.zrangebyscore(self.keys.deadlines, "-inf", time.time()):
            job = self.get(raw.decode())
            if job is not None and job.status == "queued":
                jobs.append(job)
            else:
                self.redis.zrem(self.keys.deadlines, raw)
        return jobs

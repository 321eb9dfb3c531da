"""The reconciler's side of the job service: re-queue, give up on poison, expire, find orphans.

Each step is judged by Redis's clock and re-checked inside the step that
acts on it, so a slow reconciler, a worker with a wrong clock or a round
that outlived its lock can only skip work, never undo someone else's.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from tasks.jobs.record import Job
from tasks.jobs.scripts import PRIORITY_SCALE
from tasks.protocol.errors import ServerError

if TYPE_CHECKING:
    from tasks.jobs.service import JobService

log = logging.getLogger(__name__)

#: What requeue() answers.
LEFT_ALONE, REQUEUED, ENDED_CANCELLED, FAILED_FOR_GOOD, LOCK_LOST = 0, 1, 2, 3, -1
#: Stale leases handled per round at most (the next round takes the rest).
STALE_BATCH = 1000


def poison_error(attempts: int) -> dict:
    """What a job that took its worker down on every attempt says to its owner."""
    return ServerError(
        f"The job was started {attempts} times and each time the worker running it stopped "
        "(crashed, was killed or ran out of memory); it will not be retried.",
        code="job_failed_repeatedly",
    ).to_dict()


class Recovery:
    """Mixed into JobService (tasks.jobs.service), which provides the scripts and the policy."""

    def stale_leases(self: JobService, older_than: float) -> tuple[list[str], float]:
        """Jobs whose lease was last renewed before now - `older_than` (Redis's now), and that cut-off."""
        reply = self._stale(keys=[self.keys.leases], args=[older_than, STALE_BATCH])
        return [raw.decode() for raw in reply[1:]], float(reply[0])

    def requeue(self: JobService, job_id: str, stale_before: float, lock_token: str) -> int:
        """Put a dead worker's job back in its queue and re-send its message, or end it for good.

        `lock_token` fences the round: a reconciler whose lock expired mid-round
        changes nothing. A job on its last allowed attempt fails instead
        (`job_failed_repeatedly`), so one request that kills every worker it
        lands on cannot take its model down.
        """
        job = self.get(job_id)
        if job is None:
            self.redis.zrem(self.keys.leases, job_id)
            return LEFT_ALONE
        k, policy = self.keys, self.policy
        keys = [k.job(job_id), k.events(job_id), k.queue(job.model), k.leases]
        keys += [k.reconciler_lock, k.open_jobs(job.owner), k.stats]
        error = json.dumps(poison_error(job.attempts))
        args = [job_id, stale_before, lock_token, policy.max_attempts, error, policy.retention, policy.sync_retention]
        outcome = int(self._requeue(keys=keys, args=args))
        if outcome == REQUEUED:
            if job.status == "in_progress":
                # Its worker may be alive but stalled: tell that attempt to stop if it wakes.
                self.redis.publish(k.cancel_channel, f"{job_id} {job.attempts}")
            if self.broker is not None:
                self.broker.send(job)
        elif outcome == FAILED_FOR_GOOD:
            log.error("job %s failed after %d attempts, each ending with its worker", job_id, job.attempts)
        return outcome

    def overdue(self: JobService) -> list[Job]:
        """Queued jobs past their `expires_in`; ids whose job is gone or started are dropped from the index."""
        jobs = []
        for raw in self.redis.zrangebyscore(self.keys.deadlines, "-inf", self.server_time()):
            job = self.get(raw.decode())
            if job is not None and job.status == "queued":
                jobs.append(job)
            else:
                self.redis.zrem(self.keys.deadlines, raw)
        return jobs

    def expire(self: JobService, job: Job) -> bool:
        return self.end_queued(job, "expired", if_overdue=True)

    def unleased_queued(self: JobService, model: str, older_than: float) -> list[Job]:
        """Jobs queued (or re-queued) more than `older_than` ago that no worker has received.

        A healthy one has its message in the broker's list; the caller compares.
        """
        cutoff_ms = (self.server_time() - older_than) * 1000
        entries = self.redis.zrange(self.keys.queue(model), 0, -1, withscores=True)
        old = [raw.decode() for raw, score in entries if score % PRIORITY_SCALE < cutoff_ms]
        if not old:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for job_id in old:
            pipe.zscore(self.keys.leases, job_id)
        unleased = [job_id for job_id, lease in zip(old, pipe.execute(), strict=True) if lease is None]
        jobs = [self.get(job_id) for job_id in unleased]
        return [job for job in jobs if job is not None and job.status == "queued"]

    def resend(self: JobService, job: Job) -> None:
        """Send a queued job's message again; a duplicate is harmless (the claim starts a job once)."""
        if self.broker is not None:
            self.broker.send(job)

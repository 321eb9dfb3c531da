"""The workers' side of the job service: claim an attempt, stream it, finish it, hold its lease.

Every write of an attempt is fenced by its number (tasks.jobs.attempt_scripts):
a worker that was presumed dead and replaced learns it at its next write
(`Superseded`) and stops, instead of interleaving its tokens with the new
attempt's or billing a second time.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import TYPE_CHECKING, Any

from tasks.jobs.policy import STREAM_GRACE_SECONDS
from tasks.jobs.reads import THROUGHPUT_WINDOW_SECONDS
from tasks.jobs.record import Claim, encode_field
from tasks.protocol.requests import request_from_json
from workers.outputs import Delta

if TYPE_CHECKING:
    from tasks.jobs.service import JobService

#: Tokens-per-minute counters outlive their minute by this much (the limit looks one minute back).
TPM_TTL_SECONDS = 180
#: What append_delta answers.
APPENDED, SUPERSEDED, CANCELLED = 1, 0, 2


class Superseded(RuntimeError):
    """This attempt no longer owns its job: it was re-queued (and maybe re-run) elsewhere."""


class Attempts:
    """Mixed into JobService (tasks.jobs.service), which provides the scripts and the policy."""

    def claim(self: JobService, job_id: str, model: str, worker: str = "") -> Claim | None:
        """Start an attempt of a queued job; None if it must not run (running elsewhere, ended, expired)."""
        k = self.keys
        keys = [k.job(job_id), k.queue(model), k.deadlines, k.leases]
        reply = self._claim(keys=keys, args=[job_id, worker])
        if reply[0] == b"overdue":
            self.end_ids(job_id, model, reply[1].decode(), "expired")
        if reply[0] != b"start":
            return None
        return Claim(job_id, int(reply[1]), reply[3].decode(), request_from_json(json.loads(reply[2])))

    def append_delta(self: JobService, claim: Claim, delta: Delta) -> bool:
        """Stream a delta; False once the job is cancelled (stop streaming); `Superseded` if another attempt owns it."""
        outcome = self.append_deltas([(claim, delta_json(delta))])[0]
        if outcome == SUPERSEDED:
            raise Superseded(f"job {claim.job_id}: attempt {claim.attempt} was superseded")
        return outcome == APPENDED

    def append_deltas(self: JobService, deltas: list[tuple[Claim, str]]) -> list[int]:
        """Stream encoded deltas of any jobs, in order, in one step; one outcome each (APPENDED, ...)."""
        keys: list[str] = []
        args: list[Any] = []
        for claim, data in deltas:
            keys += [self.keys.job(claim.job_id), self.keys.events(claim.job_id)]
            args += [claim.attempt, data]
        return [int(outcome) for outcome in self._append(keys=keys, args=args)]

    def emitted(self: JobService, job_id: str) -> int:
        """Events already in the job's stream (a rerun of a streamed job cannot take them back)."""
        return int(self.redis.xlen(self.keys.events(job_id)))

    def finish(
        self: JobService,
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
        k, now = self.keys, time.time()
        fields: list[str | bytes] = ["status", status]
        for name, value in (("result", result), ("error", error), ("usage", usage)):
            if value is not None:
                fields += [name, encode_field(value)]
        if error is not None:
            fields += ["error_status", str(error_status or 500)]
        usage = usage or {}
        keys = [
            k.job(claim.job_id),
            k.events(claim.job_id),
            k.leases,
            k.done(claim.request.model),
            k.stats,
            k.usage(claim.owner, utc_day(now)),
            k.tpm(claim.owner, int(now // 60)),
            k.open_jobs(claim.owner),
            k.waiting(claim.owner),
        ]
        args = [
            claim.attempt,
            self.policy.retention,
            self.policy.sync_retention,
            claim.job_id,
            int(usage.get("prompt_tokens") or 0),
            int(usage.get("completion_tokens") or 0),
            TPM_TTL_SECONDS,
            THROUGHPUT_WINDOW_SECONDS,
            int(not claim.request.stream),
            STREAM_GRACE_SECONDS,
            *fields,
        ]
        return bool(self.replicated(self._finish, keys, args))

    def hand_back(self: JobService, claim: Claim) -> bool:
        """A stopping worker gives back a job it runs: queued again and its message re-sent, at once.

        This attempt's later writes are refused (`Superseded`, or a refused
        finish). False when there was nothing to give back (it ended, was
        cancelled, or another attempt owns it).
        """
        k = self.keys
        keys = [k.job(claim.job_id), k.queue(claim.request.model), k.leases]
        if not self._hand_back(keys=keys, args=[claim.job_id, claim.attempt]):
            return False
        self.resend_queued(claim.job_id)
        return True

    def unhold(self: JobService, job_id: str) -> bool:
        """A stopping worker lets go of a job it received and never started: its lease goes, its message is re-sent."""
        if not self._unhold(keys=[self.keys.job(job_id), self.keys.leases], args=[job_id]):
            return False
        self.resend_queued(job_id)
        return True

    def resend_queued(self: JobService, job_id: str) -> None:
        job = self.get(job_id)
        if job is not None and job.status == "queued" and self.broker is not None:
            self.broker.send(job)

    def hold_leases(self: JobService, job_ids: list[str]) -> int:
        """A worker received these jobs' messages: it answers for those still queued from now on."""
        if not job_ids:
            return 0
        return self._hold(keys=[self.keys.leases, *map(self.keys.job, job_ids)], args=job_ids)

    def renew_leases(self: JobService, job_ids: list[str]) -> None:
        """Still alive and holding these; a lease the reconciler already took away is not brought back."""
        if job_ids:
            self._renew(keys=[self.keys.leases], args=job_ids)


def delta_json(delta: Delta) -> str:
    """A delta as its stream entry carries it."""
    return json.dumps(delta.to_json(), separators=(",", ":"))


def utc_day(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).date().isoformat()

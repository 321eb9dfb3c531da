"""Nothing accepted is ever lost: put back the jobs a dead worker held, expire overdue ones.

A worker holds a lease on every job it has received (reserved or running)
and renews them every couple of seconds. If it dies (SIGKILL, OOM, host
gone), its leases go stale; the reconciler, which runs in every worker and
takes turns through a Redis lock, marks those jobs queued again and re-sends
their messages. An old message that still turns up (put back by a worker
that stopped gracefully) is harmless: the job record's compare-and-set start
makes it a no-op. A job whose workers die on every attempt fails
after INFERQ_MAX_ATTEMPTS. Queued jobs whose broker message is gone (a send
that never happened, a Redis crash that lost its last writes) are re-sent.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable

from tasks.jobs import JobService
from tasks.jobs.recovery import LOCK_LOST, REQUEUED

log = logging.getLogger(__name__)


def celery_held_ids() -> set[str]:
    """The task ids Celery itself still holds in this process (reserved or running).

    When the broker connection drops, Celery forgets the messages it had
    reserved but not started (their delivery tags died with the channel) and
    no task signal fires for them; only its own state says so.
    """
    from celery.worker import state

    return {r.id for r in tuple(state.reserved_requests)} | {r.id for r in tuple(state.active_requests)}


class LeaseKeeper:
    """Holds and renews the leases of the jobs this worker process holds, and only those.

    A job is held once per message received for it: a duplicate message
    (re-sent by the orphan sweep) that arrives while the job runs here is
    released without dropping the running attempt's lease.

    A hold is written at the next renewal round, not as the message arrives:
    the claim, a millisecond later, writes the lease of a job that starts, so
    only a job received and still not started by then needs its own. Writing
    each hold at once cost an fsynced round trip in Celery's consumer thread,
    between a submit and its claim, for every job. A worker that dies in that
    gap leaves a queued job with no message and no lease: the orphan sweep
    re-sends it, as it does for a message lost any other way.
    """

    def __init__(self, store: JobService, held_ids: Callable[[], set[str]] = celery_held_ids) -> None:
        self.store = store
        self.held: Counter[str] = Counter()
        self.held_ids = held_ids
        self._missing: set[str] = set()
        self._unwritten: set[str] = set()
        self._lock = threading.Lock()
        #: One flush at a time: `holding` returns only once every hold taken before it is written.
        self._flushing = threading.Lock()

    def hold(self, job_id: str) -> None:
        with self._lock:
            self.held[job_id] += 1
            self._unwritten.add(job_id)

    def started(self, job_id: str) -> None:
        """Its claim wrote the lease."""
        with self._lock:
            self._unwritten.discard(job_id)

    def release(self, job_id: str) -> None:
        with self._lock:
            self.held[job_id] -= 1
            if self.held[job_id] <= 0:
                del self.held[job_id]
                self._unwritten.discard(job_id)

    def flush(self) -> None:
        """Write the holds of jobs received and not started yet (those still queued)."""
        with self._flushing:
            with self._lock:
                unwritten, self._unwritten = list(self._unwritten), set()
            self.store.hold_leases(unwritten)

    def holding(self) -> list[str]:
        """The jobs held here, each with its lease written (a stopping worker lets go of them by it)."""
        self.flush()
        with self._lock:
            return list(self.held)

    def _current(self) -> list[str]:
        """Held jobs Celery still knows; a job missing twice in a row is let go (the reconciler re-queues it)."""
        known = self.held_ids()
        with self._lock:
            missing = set(self.held) - known
            dropped = missing & self._missing
            for job_id in dropped:
                del self.held[job_id]
            self._missing = missing - dropped
            if dropped:
                log.warning("celery dropped %d reserved job(s); letting their leases lapse", len(dropped))
            return list(self.held)

    def renew(self) -> None:
        """One round of holds and renewals; the worker runs it every INFERQ_LEASE_RENEW_SECONDS."""
        self.flush()
        self.store.renew_leases(self._current())


class Reconciler:
    """Re-queues the jobs of dead workers, expires overdue ones and re-sends lost messages, a round at a time.

    The worker calls `run_once` every `interval`, which is also the round lock's
    lifetime: across all workers there is one round per interval, whoever runs
    it, and every re-queue checks the round still holds the lock (its token).
    Every `orphan_after` seconds a round also compares each model's queued
    jobs with the broker's messages (`broker_ids`) and re-sends the missing.
    `store` must have a `send`: it re-sends re-queued jobs' messages.
    """

    def __init__(
        self,
        store: JobService,
        lease_timeout: float,
        interval: float,
        *,
        models: list[str] | None = None,
        broker_ids: Callable[[str], set[str]] | None = None,
        orphan_after: float = 30.0,
    ) -> None:
        self.store = store
        self.lease_timeout, self.interval = lease_timeout, interval
        self.models, self.broker_ids, self.orphan_after = models or [], broker_ids, orphan_after

    def run_once(self) -> tuple[int, int, int]:
        """One round, if no other worker is running one: (re-queued, expired, re-sent)."""
        token = secrets.token_hex(8)
        if not self.store.redis.set(self.store.keys.reconciler_lock, token, nx=True, px=int(self.interval * 1000)):
            return 0, 0, 0
        requeued = self._requeue_stale(token)
        expired = sum(self.store.expire(job) for job in self.store.overdue())
        resent = sum(self._sweep_orphans(model) for model in self.models)
        return requeued, expired, resent

    def _requeue_stale(self, token: str) -> int:
        requeued = 0
        stale, before = self.store.stale_leases(self.lease_timeout)
        for job_id in stale:
            outcome = self.store.requeue(job_id, before, token)
            if outcome == LOCK_LOST:
                break  # this round outlived its lock; the next one goes on
            if outcome == REQUEUED:
                log.warning("job %s was held by a worker that stopped renewing it; re-queued", job_id)
                requeued += 1
        return requeued

    def _sweep_orphans(self, model: str) -> int:
        """Re-send queued jobs whose message is in no broker list (lost send, lost AOF tail, deleted)."""
        if self.broker_ids is None:
            return 0
        every = max(1, int(self.orphan_after * 1000))
        due = self.store.redis.set(self.store.keys.orphan_sweep(model), "1", nx=True, px=every)
        if not due:
            return 0
        live = self.broker_ids(model)  # first: a message taken after this look has a lease by the next
        orphans = [job for job in self.store.unleased_queued(model, self.orphan_after) if job.id not in live]
        for job in orphans:
            log.warning("job %s was queued with no broker message; sending it again", job.id)
            self.store.resend(job)
        return len(orphans)

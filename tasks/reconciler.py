"""Nothing accepted is ever lost: put back the jobs a dead worker held, expire overdue ones.

A worker holds a lease on every job it has received (reserved or running)
and renews them every couple of seconds. If it dies (SIGKILL, OOM, host
gone), its leases go stale; the reconciler, which runs in every worker and
takes turns through a Redis lock, marks those jobs queued again and re-sends
their messages. The broker's own redelivery (after the visibility timeout)
may later deliver the old message too: the job record's compare-and-set
start makes that a no-op.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tasks.jobs import JobService

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
    """Renews the leases of the jobs this worker process holds, and only those."""

    def __init__(self, store: JobService, held_ids: Callable[[], set[str]] = celery_held_ids) -> None:
        self.store = store
        self.held: set[str] = set()
        self.held_ids = held_ids
        self._missing: set[str] = set()
        self._lock = threading.Lock()

    def hold(self, job_id: str) -> None:
        with self._lock:
            self.held.add(job_id)
        self.store.renew_leases([job_id])

    def release(self, job_id: str) -> None:
        with self._lock:
            self.held.discard(job_id)

    def _current(self) -> list[str]:
        """Held jobs Celery still knows; a job missing twice in a row is let go (the reconciler re-queues it)."""
        known = self.held_ids()
        with self._lock:
            missing = self.held - known
            dropped = missing & self._missing
            self.held -= dropped
            self._missing = missing - dropped
            if dropped:
                log.warning("celery dropped %d reserved job(s); letting their leases lapse", len(dropped))
            return list(self.held)

    def renew(self) -> None:
        """One round of renewals; the worker runs it every INFERQ_LEASE_RENEW_SECONDS."""
        self.store.renew_leases(self._current())


class Reconciler:
    """Re-queues the jobs of dead workers and expires overdue ones, a round at a time.

    The worker calls `run_once` every `interval`, which is also the round lock's
    lifetime: across all workers there is one round per interval, whoever runs it.
    `store` must have a `send`: it re-sends re-queued jobs' messages.
    """

    def __init__(self, store: JobService, lease_timeout: float, interval: float) -> None:
        self.store = store
        self.lease_timeout, self.interval = lease_timeout, interval

    def run_once(self) -> tuple[int, int]:
        """One round, if no other worker is running one: (re-queued, expired)."""
        lock = self.store.keys.reconciler_lock
        if not self.store.redis.set(lock, "1", nx=True, px=int(self.interval * 1000)):
            return 0, 0
        requeued = expired = 0
        stale, before = self.store.stale_leases(self.lease_timeout)
        for job_id in stale:
            if self.store.requeue(job_id, before) is not None:
                log.warning("job %s was held by a worker that stopped renewing it; re-queued", job_id)
                requeued += 1
        for job in self.store.overdue():
            expired += self.store.end_queued(job, "expired")
        return requeued, expired

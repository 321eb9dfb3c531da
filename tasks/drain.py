"""Graceful drain: a worker asked to stop finishes what it runs within a bound and gives back the rest.

Celery's warm shutdown (SIGTERM) stops consuming and waits for every running
task, however long: a scale-down or a rolling update would then wait for the
longest generation, or be SIGKILLed by its supervisor and leave its jobs to
the reconciler (a lease timeout later). `Drain` bounds it:

1. at SIGTERM (Celery's `worker_shutting_down`) the worker leaves its model's
   live set, so the API stops counting on it, and lets go of every job it
   received but did not start (`JobService.unhold`: lease dropped, message
   re-sent), so another worker takes them at once;
2. jobs already running get `seconds` (INFERQ_DRAIN_SECONDS) to finish;
3. whatever still runs then is handed back (`JobService.hand_back`: queued
   again, message re-sent, fenced by its attempt) and aborted in the engine,
   so its task returns at once and Celery's shutdown completes. A task that
   starts after that is handed back as it claims.

Handing back uses the job service's own compare-and-set steps, as the
reconciler's re-queue does, so a job ends exactly once wherever it reruns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tasks.jobs import Claim, JobService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrainReport:
    """What one drain did, for the log and the tests."""

    finished: int
    handed_back: int
    unheld: int
    seconds: float


class Drain:
    """Shared by the worker's chores (which `begin` it) and its tasks (which `admit` and `done` their claims)."""

    def __init__(
        self,
        store: JobService,
        seconds: float,
        *,
        held: Callable[[], list[str]],
        abort: Callable[[str], None],
        on_begin: Callable[[], object] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store, self.seconds, self.held, self.abort, self.on_begin = store, seconds, held, abort, on_begin
        self.clock = clock
        self.active: dict[str, Claim] = {}
        self.draining = False
        #: Past the bound: nothing may run here any more.
        self.closed = False
        self.report: DrainReport | None = None
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        """Start draining (once); returns at once, since Celery calls it from its signal handler."""
        with self._cond:
            if self.draining:
                return
            self.draining = True
        self._thread = threading.Thread(target=self._run, name="inferq-drain", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> DrainReport | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.report

    def admit(self, claim: Claim) -> bool:
        """Count a started attempt in; False once the drain's bound has passed (hand it back instead)."""
        with self._cond:
            if self.closed:
                return False
            self.active[claim.job_id] = claim
            return True

    def done(self, job_id: str) -> None:
        with self._cond:
            self.active.pop(job_id, None)
            self._cond.notify_all()

    def _run(self) -> None:
        started = self.clock()
        try:
            self.on_begin()
        except Exception:  # noqa: BLE001 - the drain must go on
            log.warning("drain: leaving the live set failed", exc_info=True)
        unheld = self._unhold_unstarted()
        with self._cond:
            running = len(self.active)
            self._cond.wait_for(lambda: not self.active, timeout=max(0.0, self.seconds - (self.clock() - started)))
            remaining, self.closed = list(self.active.values()), True
        handed_back = sum(self._hand_back(claim) for claim in remaining)
        self.report = DrainReport(running - len(remaining), handed_back, unheld, self.clock() - started)
        log.warning(
            "drain: %d job(s) finished, %d handed back, %d received and never started let go, in %.1f s",
            self.report.finished,
            handed_back,
            unheld,
            self.report.seconds,
        )

    def _unhold_unstarted(self) -> int:
        with self._cond:
            started = set(self.active)
        count = 0
        for job_id in self.held():
            if job_id not in started:
                count += self._safely(self.store.unhold, job_id)
        return count

    def _hand_back(self, claim: Claim) -> bool:
        handed = self._safely(self.store.hand_back, claim)
        self.abort(claim.job_id)  # its task returns at once; its writes are refused anyway
        return handed

    @staticmethod
    def _safely(step: Callable[[object], bool], item: object) -> bool:
        """A step that fails (Redis away) leaves the job to the reconciler: its lease lapses with this process."""
        try:
            return bool(step(item))
        except Exception:  # noqa: BLE001 - one job's failure must not stop the drain of the others
            log.warning("drain: could not give back %s", getattr(item, "job_id", item), exc_info=True)
            return False

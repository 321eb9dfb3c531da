"""Running jobs are aborted inside the engine when cancelled.

The job service marks the record and publishes the job id on one channel
(JobService.cancel); every worker listens and aborts the job if it is running
it, which frees the engine slot at once instead of after the last token. The
reconciler publishes `<job id> <attempt>` when it re-queues a job whose
worker looked dead: if that worker was only stalled, it drops that attempt
(and only that one: the job may already run again here).

A cancel can land after a worker claimed the job and before it tracks it.
The listener remembers the cancels of jobs it does not run, so `track`
answers whether the job's cancel already came: a job that was cancelled in
that window ends at once, with no read of its status per job. A cancel
published while the listener is resubscribing (Redis gone) is missed, here
as for running jobs: the job runs on, and its finish step keeps it cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from redis.client import PubSub

from tasks.jobs import JobService

log = logging.getLogger(__name__)

#: Longest wait for one message: how soon a stopping worker's listener notices.
POLL_SECONDS = 1.0
#: How many cancels of jobs not running here are remembered (the oldest are forgotten first).
REMEMBERED_CANCELS = 10_000


class CancelListener:
    """Runs in each worker: aborts the jobs this process is running when asked.

    The worker calls `poll` in a loop (`tasks.background.BackgroundLoop`, no
    pause between calls): each call waits up to a second for one message, so
    the loop notices a stop within a second. A call that fails drops the
    subscription; the next one, a second later, subscribes again.
    """

    def __init__(self, store: JobService, abort: Callable[[str, int], None]) -> None:
        self.store, self.abort = store, abort
        #: job id -> (engine requests, attempt)
        self.running: dict[str, tuple[int, int | None]] = {}
        self._lock = threading.Lock()
        self._pubsub: PubSub | None = None
        #: Cancelled job ids this process did not run when their cancel came (see the module's docstring).
        self._cancelled: OrderedDict[str, bool] = OrderedDict()

    def track(self, job_id: str, requests: int, attempt: int | None = None) -> bool:
        """Abort this job on its cancel from now on; True if its cancel came before (do not run it)."""
        with self._lock:
            self.running[job_id] = (requests, attempt)
            return self._cancelled.pop(job_id, False)

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self.running.pop(job_id, None)

    def abort_running(self, job_id: str) -> None:
        """Abort this job's engine requests if it runs here (a draining worker giving it back)."""
        with self._lock:
            requests, _attempt = self.running.get(job_id, (0, None))
        if requests:
            self.abort(job_id, requests)

    def poll(self) -> None:
        try:
            message = self._subscription().get_message(timeout=POLL_SECONDS)
        except Exception:
            self.close()  # Redis restarted or the connection broke: subscribe afresh next time
            raise
        if message is not None:
            self._abort_if_running(message["data"])

    def close(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):  # the connection may be gone already
                pubsub.close()

    def _subscription(self) -> PubSub:
        if self._pubsub is None:
            self._pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
            self._pubsub.subscribe(self.store.keys.cancel_channel)
        return self._pubsub

    def _abort_if_running(self, data: bytes | str) -> None:
        job_id, _, attempt = (data.decode() if isinstance(data, bytes) else data).partition(" ")
        with self._lock:
            requests, running_attempt = self.running.get(job_id, (0, None))
            if not requests and not attempt:
                self._remember(job_id)
        if not requests or (attempt and str(running_attempt) != attempt):
            return
        log.info("job %s %s; aborting it in the engine", job_id, "superseded" if attempt else "cancelled")
        self.abort(job_id, requests)

    def _remember(self, job_id: str) -> None:
        self._cancelled[job_id] = True
        if len(self._cancelled) > REMEMBERED_CANCELS:
            self._cancelled.popitem(last=False)

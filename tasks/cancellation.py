"""Running jobs are aborted inside the engine when cancelled.

The job service marks the record and publishes the job id on one channel
(JobService.cancel); every worker listens and aborts the job if it is running
it, which frees the engine slot at once instead of after the last token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tasks.jobs import JobService

log = logging.getLogger(__name__)


class CancelListener:
    """Runs in each worker: aborts the jobs this process is running when asked."""

    def __init__(self, store: JobService, abort: Callable[[str, int], None]) -> None:
        self.store, self.abort = store, abort
        self.running: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inferq-cancel", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def track(self, job_id: str, requests: int) -> None:
        with self._lock:
            self.running[job_id] = requests

    def untrack(self, job_id: str) -> None:
        with self._lock:
            self.running.pop(job_id, None)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self.store.redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.store.keys.cancel_channel)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    data = message["data"]
                    job_id = data.decode() if isinstance(data, bytes) else data
                    with self._lock:
                        requests = self.running.get(job_id)
                    if requests:
                        log.info("job %s cancelled; aborting it in the engine", job_id)
                        self.abort(job_id, requests)
            except Exception:  # noqa: BLE001 - Redis restarts: resubscribe
                log.warning("cancel listener lost Redis; resubscribing", exc_info=True)
                self._stop.wait(1.0)

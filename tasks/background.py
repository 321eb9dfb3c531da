"""One way to run something periodically beside a worker's Celery threads.

A worker keeps six chores going for its whole life: the heartbeat, the lease
renewals, the reconciler, the cancel listener, the engine watchdog and the
consumer watch. Each used to carry its own thread, stop flag and try/except;
they differed only in what they swallowed and what they logged. Here they
share one loop, so they all survive a Redis restart the same way, say so in
the log once per outage (not once a second), and stop promptly when the
worker shuts down.

It lives in `tasks/` because the worker process wires the loops up: the
engine watchdog's loop is started here too, and `workers/` only offers the
one call it makes (`workers.runtime.restart_if_dead`), so `workers/` never
imports `tasks/`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How long `stop()` waits for a step in progress: a step that blocks longer
#: (a Redis call on a dead connection) is abandoned to die with the process.
STOP_TIMEOUT = 5.0


class BackgroundLoop:
    """Calls `step()` every `interval` seconds on a named daemon thread until `stop()`.

    `wait_first` waits one interval before the first step (for chores that
    have nothing to do at start); otherwise the first step runs at once. After
    a step that raised, the next one comes after `retry_after` (default: the
    interval): a step that blocks on its own (a pubsub read) runs with
    interval 0 but must not spin while Redis is down. `on_stop` releases what
    the steps hold (a registration, a subscription) once no step can run any
    more, so a late step cannot undo it.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], object],
        interval: float,
        *,
        wait_first: bool = False,
        retry_after: float | None = None,
        on_stop: Callable[[], object] | None = None,
    ) -> None:
        self.name, self.step, self.interval = name, step, interval
        self.wait_first, self.on_stop = wait_first, on_stop
        self.retry_after = interval if retry_after is None else retry_after
        self.failures = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the loop to end and wait for a step in progress, so nothing runs after this returns."""
        self._stopping.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self.on_stop is not None:
            try:
                self.on_stop()
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.warning("%s did not clean up", self.name, exc_info=True)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        pause = self.interval if self.wait_first else 0.0
        while not self._stopping.wait(pause):
            pause = self.interval if self._step_once() else self.retry_after

    def _step_once(self) -> bool:
        """Run one step; log the first failure of a streak loudly, the rest quietly."""
        try:
            self.step()
        except Exception:  # noqa: BLE001 - a chore must outlive a Redis restart or a failed restart
            self.failures += 1
            if self.failures == 1:
                log.warning("%s failed; retrying every %g s", self.name, self.retry_after, exc_info=True)
            else:
                log.debug("%s failed again (%d in a row)", self.name, self.failures, exc_info=True)
            return False
        if self.failures:
            log.info("%s recovered after %d failed round(s)", self.name, self.failures)
            self.failures = 0
        return True

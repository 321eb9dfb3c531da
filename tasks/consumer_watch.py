"""Notices a Celery consumer that stopped taking messages without saying so.

After Redis is killed and comes back, Celery's Redis consumer can stay
"connected" yet never ask for another message (celery/celery#10205): no
"Connection to broker lost" in the log, the worker's own chores recover and
its heartbeat says it is live, so the API keeps queueing jobs that nobody
takes. Celery offers no way to rebuild the consumer from outside its loop,
so a worker that sees its model's queue hold messages while it holds none
for `stall_seconds` shuts itself down (warm: it holds nothing to finish) and
its supervisor starts a fresh one, as it does when kombu exits the worker on
the same fault (celery/kombu#582).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: A healthy consumer with free slots takes a waiting message within a second; a minute is a stall.
STALL_SECONDS = 60.0


class ConsumerWatch:
    """`check()` periodically; `received()` from the consumer's task_received signal.

    `backlog()` counts the messages waiting in the model's broker lists and
    `idle()` says the worker holds no job: a waiting message and an idle
    worker for `stall_seconds`, with nothing received meanwhile, is a stall.
    """

    def __init__(
        self,
        backlog: Callable[[], int],
        idle: Callable[[], bool],
        on_stall: Callable[[], object],
        *,
        stall_seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backlog, self.idle, self.on_stall = backlog, idle, on_stall
        self.stall_seconds, self.clock = stall_seconds, clock
        self._since: float | None = None
        self._received = clock()
        self.stalled = False

    def received(self) -> None:
        self._received = self.clock()

    def check(self) -> None:
        if self.stalled:
            return
        if not self.idle() or self.backlog() == 0:
            self._since = None
            return
        now = self.clock()
        if self._since is None:
            self._since = now
        if now - max(self._since, self._received) < self.stall_seconds:
            return
        self.stalled = True
        log.critical(
            "the Celery consumer took no message for %.0f s while the queue held some and this worker none "
            "(celery/celery#10205, after a Redis restart); shutting down so the supervisor starts a fresh one",
            now - max(self._since, self._received),
        )
        self.on_stall()

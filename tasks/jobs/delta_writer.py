"""One writer per worker process streams every running job's deltas to Redis.

Each task thread used to write its own deltas: one round trip per token per
job, so 64 streams cost 64 round trips and 64 thread wake-ups per engine step,
CPU taken from the engine on a small machine. Now a task thread hands its delta
over and goes on, and one writer thread sends everything handed over since its
last call in one Lua step (under load, about one call per engine step).

A job's deltas keep their order (one queue, one writer). What a write learns
(the job was cancelled, another attempt owns it, Redis is gone) reaches the
task at its next delta or when it closes its stream; the task closes it before
writing its end, so the end stays the stream's last event.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING

from tasks.background import BackgroundLoop
from tasks.jobs.attempts import CANCELLED, SUPERSEDED, Superseded, delta_json
from tasks.jobs.record import Claim
from workers.outputs import Delta

if TYPE_CHECKING:
    from tasks.jobs.service import JobService

log = logging.getLogger(__name__)

#: Most deltas in one Lua call, so one call never holds Redis for long.
MAX_BATCH = 256
#: How long the writer thread waits for a delta before it looks at its stop flag again.
IDLE_WAIT_SECONDS = 0.5


class DeltaStream:
    """One streamed attempt's side of the writer."""

    def __init__(self, writer: DeltaWriter, claim: Claim) -> None:
        self.claim, self._writer = claim, writer
        self.pending = 0
        self.cancelled = False
        self.failure: BaseException | None = None

    def send(self, delta: Delta) -> bool:
        """Hand a delta over; False once the job is known to be cancelled (stop generating).

        Raises what an earlier write learned: `Superseded`, or Redis's error.
        """
        self._raise_failure()
        if self.cancelled:
            return False
        self._writer.put(self, delta_json(delta))
        return True

    def close(self) -> None:
        """Wait until every delta sent is written; raise what the writes learned."""
        self.wait()
        self._raise_failure()

    def wait(self) -> None:
        self._writer.wait_written(self)

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


class DeltaWriter:
    """The queue of deltas handed over and the thread that writes them (started on first use)."""

    def __init__(self, service: JobService) -> None:
        self.service = service
        self._queue: queue.SimpleQueue[tuple[DeltaStream, str]] = queue.SimpleQueue()
        self._written = threading.Condition()
        self._loop: BackgroundLoop | None = None
        self._start_lock = threading.Lock()

    def open(self, claim: Claim) -> DeltaStream:
        self._start()
        return DeltaStream(self, claim)

    def put(self, stream: DeltaStream, data: str) -> None:
        with self._written:
            stream.pending += 1
        self._queue.put((stream, data))

    def wait_written(self, stream: DeltaStream) -> None:
        with self._written:
            self._written.wait_for(lambda: stream.pending == 0)

    def write_pending(self, wait: float = IDLE_WAIT_SECONDS) -> int:
        """Write every delta handed over so far (up to MAX_BATCH) in one call; how many it wrote."""
        try:
            batch = [self._queue.get(timeout=wait)]
        except queue.Empty:
            return 0
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        try:
            outcomes = self.service.append_deltas([(stream.claim, data) for stream, data in batch])
        except Exception as exc:
            self._settle(batch, [exc] * len(batch))
            raise  # the loop logs it once per outage and pauses before the next call
        self._settle(batch, outcomes)
        return len(batch)

    def _settle(self, batch: list[tuple[DeltaStream, str]], outcomes: list[int] | list[Exception]) -> None:
        with self._written:
            for (stream, _), outcome in zip(batch, outcomes, strict=True):
                stream.pending -= 1
                if isinstance(outcome, Exception):
                    stream.failure = stream.failure or outcome
                elif outcome == SUPERSEDED:
                    claim = stream.claim
                    stream.failure = stream.failure or Superseded(
                        f"job {claim.job_id}: attempt {claim.attempt} was superseded"
                    )
                elif outcome == CANCELLED:
                    stream.cancelled = True
            self._written.notify_all()

    def _start(self) -> None:
        with self._start_lock:
            if self._loop is None:
                self._loop = BackgroundLoop("inferq-deltas", self.write_pending, 0.0, retry_after=1.0).start()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.stop()

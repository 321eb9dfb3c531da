"""What the job service needs from the broker, without importing Celery.

The API's submit step writes a job's record and its broker message in one Lua
call (tasks.jobs.scripts.SUBMIT), so Redis never holds a queued job whose
message was not sent, and the API spends one round trip and no kombu
publish per job. Re-sends (the reconciler's, a worker handing a job back) go
through Celery as before. `tasks.dispatch.CeleryBroker` is the one
implementation; tests pass their own to see what was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tasks.jobs.record import Job


@dataclass(frozen=True)
class BrokerMessage:
    """A task message as kombu's Redis transport stores it: LPUSHed to `list_key`."""

    list_key: str
    payload: str


class Broker(Protocol):
    def message(self, job: Job) -> BrokerMessage:
        """The job's message, for the submit step to push with the record."""

    def send(self, job: Job) -> None:
        """Publish the job's message now (a re-send)."""

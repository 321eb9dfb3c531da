"""Each model's backlog as a scaler must see it: waiting, reserved and running, counted once each.

A scaler that reads one list length undercounts: kombu's Redis transport keeps
one list per priority step of a queue (`tasks.dispatch.broker_lists`), and a
message a worker has received sits in none of them (it is in the worker's
memory only: kombu's ack emulation is off, see tasks.celery_app). What is
knowable, and from where:

- `waiting`: messages in every priority list of the model's queue (the broker);
- `reserved`: jobs a worker has received but not started. A worker takes a
  lease on every job the moment its message arrives (`LeaseKeeper.hold`), and
  the job stays `queued` until its task claims it: leased and `queued`;
- `running`: leased and `in_progress` (the claim sets both in one step).

The job store answers the last two: a worker's memory cannot be read, and
its leases say what it holds. A message between its BRPOP and the worker's
lease (a few milliseconds) is in neither.
A duplicate message (re-sent by the orphan sweep) counts in `waiting` until a
worker takes and drops it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tasks.dispatch import broker_lists
from tasks.jobs import JobService


@dataclass(frozen=True)
class Backlog:
    """One model's work not yet done: what a scaler divides by a worker's slots."""

    model: str
    waiting: int
    reserved: int
    running: int

    @property
    def total(self) -> int:
        return self.waiting + self.reserved + self.running

    def to_json(self) -> dict[str, int | str]:
        return {**asdict(self), "total": self.total}


def backlogs(store: JobService, models: list[str]) -> list[Backlog]:
    """Every model's backlog, in `models` order, from three round trips whatever the number of models."""
    with store.redis.pipeline(transaction=False) as pipe:
        for model in models:
            for key in broker_lists(model):
                pipe.llen(key)
        lengths = pipe.execute()
    steps = len(lengths) // max(len(models), 1)
    held = store.held_per_model()
    return [
        Backlog(
            model,
            waiting=sum(lengths[index * steps : (index + 1) * steps]),
            reserved=held.get(model, {}).get("queued", 0),
            running=held.get(model, {}).get("in_progress", 0),
        )
        for index, model in enumerate(models)
    ]


def backlog(store: JobService, model: str) -> Backlog:
    return backlogs(store, [model])[0]

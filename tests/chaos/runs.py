"""One fault's run: a fresh key, its mixed load, the wait for its jobs, and its books.

Each assertion helper names the promise it checks, so a failing fault says
in one line which promise broke and for which jobs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from devstack.faults import Books, end_events, owned_jobs
from tests.chaos.load import MixedLoad
from tests.chaos.stack import ChaosStack
from tests.harness import wait_until

#: How long the clients and the jobs of one fault may take once the fault is over: a lease timeout (6 s),
#: a reconciler round (1 s), an orphan sweep (5 s) and a rerun fit many times over, even on a busy machine.
SETTLE_SECONDS = 60


@dataclass
class Run:
    fault: str
    owner: str
    load: MixedLoad
    since: float

    @property
    def told(self) -> set[str]:
        return self.load.told


def begin(stack: ChaosStack, fault: str, *, start: bool = True, **load_options) -> Run:
    """A fresh key and its mixed load (started unless `start=False`)."""
    key, owner = stack.new_key(fault)
    load = MixedLoad(stack.url, key, **load_options)
    run = Run(fault, owner, load, time.monotonic())
    if start:
        load.start()
    return run


def jobs_in(stack: ChaosStack, run: Run, status: str) -> list[str]:
    return [job_id for job_id, r in owned_jobs(stack.client(), run.owner).items() if r["status"] == status]


def wait_running(stack: ChaosStack, run: Run, count: int, timeout: float = 120) -> list[str]:
    """Mid-run: at least `count` of the key's jobs are in progress right now; their ids."""
    return wait_until(
        lambda: (ids := jobs_in(stack, run, "in_progress")) and len(ids) >= count and ids,
        timeout,
        f"{count} jobs of {run.fault!r} in progress",
        interval=0.05,
    )


def wait_ended(stack: ChaosStack, job_id: str, timeout: float) -> None:
    """One job has its end event (a terminal status alone is not enough: a running job is cancelled before it ends)."""
    wait_until(lambda: end_events(stack.client(), job_id) > 0, timeout, f"job {job_id} to end", interval=0.1)


def close(stack: ChaosStack, run: Run, timeout: float = SETTLE_SECONDS) -> Books:
    """Wait for the clients, then for every accepted job to end (one deadline for both); audit the key."""
    deadline = time.monotonic() + timeout
    waiting = run.load.join(timeout)
    stack.settle(run.owner, run.told, max(deadline - time.monotonic(), 1.0))
    books = stack.books(run.fault, run.owner, run.told, run.since)
    if waiting:
        books.notes.append(f"{waiting} clients still waiting for an answer {timeout:g} s after the fault")
    return books


def assert_every_job_ended_once(books: Books) -> None:
    """Nothing lost, nothing ended twice, billed = stored."""
    assert not books.problems(), f"{books.fault}: " + "; ".join(books.problems())


def error_codes(books: Books, status: str = "failed") -> dict[str, str | None]:
    """Job id -> error code of the key's jobs that ended with `status`."""
    return {
        job_id: (json.loads(r["error"]).get("error", {}).get("code") if r.get("error") else None)
        for job_id, r in books.records.items()
        if r["status"] == status
    }


def assert_failures_only(books: Books, *codes: str) -> None:
    """Jobs a fault may fail fail with one of these error codes (anything else is a bug the fault exposed)."""
    unexpected = {job_id: code for job_id, code in error_codes(books).items() if code not in codes}
    assert not unexpected, f"{books.fault}: jobs failed with unexpected codes: {unexpected}"


def assert_no_server_errors(run: Run) -> None:
    statuses = run.load.statuses()
    assert 500 not in statuses, f"{run.fault}: the API answered 500 ({statuses.count(500)} times)"

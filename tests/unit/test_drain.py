"""The drain's decisions, with the job service replaced by a recorder (Redis is tested in integration)."""

from __future__ import annotations

import threading

from tasks.drain import Drain
from tasks.jobs import Claim
from tests.harness import wait_until


class Recorder:
    def __init__(self) -> None:
        self.unheld: list[str] = []
        self.handed_back: list[str] = []

    def unhold(self, job_id: str) -> bool:
        self.unheld.append(job_id)
        return True

    def hand_back(self, claim: Claim) -> bool:
        self.handed_back.append(claim.job_id)
        return True


def claim(job_id: str) -> Claim:
    return Claim(job_id, 1, "owner", None)  # type: ignore[arg-type] - the drain never reads the request


def drain_with(seconds: float, held: list[str]) -> tuple[Drain, Recorder, list[str], threading.Event]:
    store, aborted, left = Recorder(), [], threading.Event()
    drain = Drain(store, seconds, held=lambda: held, abort=aborted.append, on_begin=left.set)  # type: ignore[arg-type]
    return drain, store, aborted, left


def test_a_drain_finishes_what_runs_in_time_and_hands_back_the_rest():
    drain, store, aborted, left = drain_with(0.5, held=["quick", "slow", "unstarted"])
    assert drain.admit(claim("quick")) and drain.admit(claim("slow"))
    drain.begin()
    assert left.wait(1), "the worker leaves the live set first"
    wait_until(lambda: store.unheld == ["unstarted"], 1, "the job it never started is let go at once")
    drain.done("quick")
    report = drain.join(5)
    assert store.handed_back == ["slow"] and aborted == ["slow"]
    assert (report.finished, report.handed_back, report.unheld) == (1, 1, 1)
    assert 0.4 < report.seconds < 2, "the bound holds, and no longer than it"
    assert not drain.admit(claim("late")), "past the bound nothing starts here"


def test_a_drain_ends_as_soon_as_the_last_job_does():
    drain, store, aborted, _ = drain_with(30, held=["only"])
    assert drain.admit(claim("only"))
    drain.begin()
    drain.begin()  # a second SIGTERM changes nothing
    drain.done("only")
    report = drain.join(5)
    assert report is not None and report.seconds < 5
    assert (store.handed_back, store.unheld, aborted) == ([], [], [])


def test_a_failing_hand_back_does_not_stop_the_others():
    drain, store, aborted, _ = drain_with(0, held=[])

    def flaky(claimed: Claim) -> bool:
        if claimed.job_id == "a":
            raise ConnectionError("Redis is away")
        store.handed_back.append(claimed.job_id)
        return True

    store.hand_back = flaky  # type: ignore[method-assign]
    drain.admit(claim("a"))
    drain.admit(claim("b"))
    drain.begin()
    report = drain.join(5)
    assert store.handed_back == ["b"] and sorted(aborted) == ["a", "b"] and report.handed_back == 1

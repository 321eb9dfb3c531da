"""The worker's one background-loop helper: timing, failures, and a clean stop."""

from __future__ import annotations

import logging
import threading

import pytest

from tasks.background import BackgroundLoop
from tests.harness import wait_until

WAIT = 10.0  # generous bound on every wait below: a condition, never a fixed sleep
LONG = 3600.0  # an interval that never elapses within a test


class Steps:
    """A step that counts its calls and lets the test wait for the n-th one."""

    def __init__(self, fail_first: int = 0) -> None:
        self.calls, self.fail_first = 0, fail_first
        self.threads: list[threading.Thread] = []
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.calls += 1
            self.threads.append(threading.current_thread())
            self._changed.notify_all()
            if self.calls <= self.fail_first:
                raise ConnectionError(f"failure {self.calls}")

    def wait_for(self, calls: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.calls >= calls, WAIT), f"only {self.calls} call(s)"


def test_steps_repeat_on_a_named_daemon_thread():
    steps = Steps()
    loop = BackgroundLoop("inferq-test", steps, 0.001).start()
    steps.wait_for(3)
    loop.stop()
    assert not loop.running
    assert {t.name for t in steps.threads} == {"inferq-test"}
    assert all(t.daemon for t in steps.threads) and threading.current_thread() not in steps.threads


def test_first_step_runs_at_once_then_waits_the_interval():
    steps = Steps()
    loop = BackgroundLoop("inferq-test", steps, LONG).start()
    steps.wait_for(1)
    loop.stop()  # returns long before the interval: stop interrupts the wait
    assert not loop.running and steps.calls == 1


def test_wait_first_waits_one_interval_before_the_first_step():
    steps = Steps()
    loop = BackgroundLoop("inferq-test", steps, LONG, wait_first=True).start()
    loop.stop()
    assert not loop.running and steps.calls == 0


def test_a_failing_step_is_retried_after_retry_after_and_logged_once_per_streak(caplog):
    steps = Steps(fail_first=3)
    caplog.set_level(logging.DEBUG, logger="tasks.background")
    loop = BackgroundLoop("inferq-test", steps, LONG, retry_after=0.001).start()
    steps.wait_for(4)  # three failures, retried quickly, then one success and the long interval
    loop.stop()
    assert steps.calls == 4 and loop.failures == 0
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    warnings = [m for level, m in levels if level == logging.WARNING]
    assert warnings == ["inferq-test failed; retrying every 0.001 s"]
    assert caplog.records[0].exc_info is not None  # the first failure keeps its traceback
    assert sum(level == logging.DEBUG for level, _ in levels) == 2
    assert levels[-1] == (logging.INFO, "inferq-test recovered after 3 failed round(s)")


def test_stop_waits_for_the_step_in_progress_before_cleaning_up():
    entered, release = threading.Event(), threading.Event()
    order: list[str] = []

    def step() -> None:
        entered.set()
        release.wait(WAIT)
        order.append("step")

    loop = BackgroundLoop("inferq-test", step, LONG, on_stop=lambda: order.append("on_stop"))
    loop.start()
    assert entered.wait(WAIT)
    stopper = threading.Thread(target=loop.stop)
    stopper.start()
    assert order == []  # stop is waiting for the step: the cleanup has not run
    release.set()
    stopper.join(WAIT)
    assert order == ["step", "on_stop"] and not loop.running


def test_a_failing_cleanup_is_logged_not_raised(caplog):
    def cleanup() -> None:
        raise ConnectionError("redis is gone")

    loop = BackgroundLoop("inferq-test", Steps(), LONG, wait_first=True, on_stop=cleanup).start()
    loop.stop()
    assert "inferq-test did not clean up" in caplog.text


def test_a_step_may_stop_its_own_loop():
    holder: dict[str, BackgroundLoop] = {}
    stopped = threading.Event()

    def step() -> None:
        holder["loop"].stop()  # must not wait for itself
        stopped.set()

    holder["loop"] = BackgroundLoop("inferq-test", step, 0.0)
    holder["loop"].start()
    assert stopped.wait(WAIT)
    wait_until(lambda: not holder["loop"].running, WAIT, "the loop to end", interval=0.01)


def test_stop_before_start_is_harmless():
    loop = BackgroundLoop("inferq-test", Steps(), LONG)
    loop.stop()
    assert not loop.running


@pytest.mark.parametrize("retry_after, expected", [(None, 2.5), (0.5, 0.5)])
def test_retry_after_defaults_to_the_interval(retry_after, expected):
    assert BackgroundLoop("inferq-test", Steps(), 2.5, retry_after=retry_after).retry_after == expected

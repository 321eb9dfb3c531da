"""The steps the worker's background loops run, with their Redis and engine replaced by fakes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tasks.cancellation import CancelListener
from tasks.keyspace import KEYS
from workers import runtime


class FakePubSub:
    def __init__(self, messages: list) -> None:
        self.messages, self.channels, self.closed = messages, [], False

    def subscribe(self, channel: str) -> None:
        self.channels.append(channel)

    def get_message(self, timeout: float):
        item = self.messages.pop(0) if self.messages else None
        if isinstance(item, Exception):
            raise item
        return item

    def close(self) -> None:
        self.closed = True


class FakeRedis:
    def __init__(self, *feeds: list) -> None:
        self.feeds, self.opened = list(feeds), []

    def pubsub(self, ignore_subscribe_messages: bool) -> FakePubSub:
        assert ignore_subscribe_messages
        pubsub = FakePubSub(self.feeds.pop(0))
        self.opened.append(pubsub)
        return pubsub


def listener_on(redis: FakeRedis) -> tuple[CancelListener, list]:
    aborted: list = []
    listener = CancelListener(
        SimpleNamespace(redis=redis, keys=KEYS), lambda job_id, count: aborted.append((job_id, count))
    )
    return listener, aborted


def test_cancel_listener_aborts_only_the_jobs_it_runs():
    redis = FakeRedis([{"data": b"job-1"}, {"data": "job-2"}, None])
    listener, aborted = listener_on(redis)
    listener.track("job-1", 3)
    for _ in range(3):
        listener.poll()
    assert aborted == [("job-1", 3)]
    assert len(redis.opened) == 1 and redis.opened[0].channels == [KEYS.cancel_channel]  # subscribed once, kept


def test_cancel_listener_resubscribes_after_losing_redis():
    redis = FakeRedis([ConnectionError("gone")], [{"data": b"job-1"}])
    listener, aborted = listener_on(redis)
    listener.track("job-1", 1)
    with pytest.raises(ConnectionError):
        listener.poll()  # the loop logs it and calls again a second later
    assert redis.opened[0].closed
    listener.poll()
    assert aborted == [("job-1", 1)] and len(redis.opened) == 2


def test_a_cancel_before_tracking_is_answered_by_track():
    """Cancelled between its claim and its tracking: the job must not run, and no status is read for it."""
    redis = FakeRedis([{"data": b"job-1"}, {"data": b"job-2 3"}])
    listener, aborted = listener_on(redis)
    listener.poll()  # job-1's cancel, before this worker tracks it
    listener.poll()  # job-2's re-queue of attempt 3 is not a cancel
    assert listener.track("job-1", 1) is True
    assert listener.track("job-2", 1, attempt=4) is False
    assert listener.track("job-3", 1) is False
    assert aborted == []


def test_remembered_cancels_are_bounded(monkeypatch):
    monkeypatch.setattr("tasks.cancellation.REMEMBERED_CANCELS", 2)
    redis = FakeRedis([{"data": f"job-{n}".encode()} for n in range(3)])
    listener, _ = listener_on(redis)
    for _ in range(3):
        listener.poll()
    assert [listener.track(f"job-{n}", 1) for n in range(3)] == [False, True, True]


def test_cancel_listener_forgets_untracked_jobs():
    redis = FakeRedis([{"data": b"job-1"}])
    listener, aborted = listener_on(redis)
    listener.track("job-1", 2)
    listener.untrack("job-1")
    listener.poll()
    listener.close()  # what the loop's on_stop does
    assert aborted == [] and redis.opened[0].closed


class FakeEngine:
    def __init__(self, llm) -> None:
        self._llm, self.generation, self.restarted = llm, 7, []

    @property
    def healthy(self) -> bool:
        return self._llm is not None and not self._llm.errored

    def restart(self, seen_generation: int) -> None:
        self.restarted.append(seen_generation)


@pytest.mark.parametrize(
    "llm, restarts",
    [
        (SimpleNamespace(errored=True), [7]),  # the core died: rebuild it, once per generation
        (SimpleNamespace(errored=False), []),  # healthy
        (None, []),  # stopped, or being rebuilt by a failing request right now
    ],
)
def test_the_watchdog_restarts_only_a_dead_engine(monkeypatch, llm, restarts):
    engine = FakeEngine(llm)
    monkeypatch.setattr(runtime, "_engine", engine)
    runtime.restart_if_dead()
    assert engine.restarted == restarts


def test_the_watchdog_does_nothing_without_an_engine(monkeypatch):
    monkeypatch.setattr(runtime, "_engine", None)
    runtime.restart_if_dead()  # no engine in this process: nothing to watch, nothing raised


def test_a_superseded_attempt_is_aborted_but_not_the_one_running_now():
    redis = FakeRedis([{"data": b"job-1 1"}, {"data": b"job-1 2"}])
    listener, aborted = listener_on(redis)
    listener.track("job-1", 2, attempt=2)  # the job was re-queued and runs here again as attempt 2
    listener.poll()
    assert aborted == [], "the message about attempt 1 must not stop attempt 2"
    listener.poll()
    assert aborted == [("job-1", 2)]


class RecordingStore:
    def __init__(self) -> None:
        self.held, self.renewed = [], []

    def hold_leases(self, ids):
        self.held.extend(ids)

    def renew_leases(self, ids):
        self.renewed.append(sorted(ids))


def test_a_duplicate_message_does_not_drop_the_running_jobs_lease():
    from tasks.reconciler import LeaseKeeper

    store = RecordingStore()
    keeper = LeaseKeeper(store, held_ids=lambda: {"job-1"})
    keeper.hold("job-1")  # the message the job runs from
    keeper.hold("job-1")  # a duplicate the orphan sweep sent, skipped by its claim
    keeper.release("job-1")
    keeper.renew()
    assert store.renewed == [["job-1"]], "the running attempt keeps its lease"
    keeper.release("job-1")
    keeper.renew()
    assert store.renewed[-1] == []


def test_a_hold_is_written_once_and_only_for_a_job_not_started_by_the_next_round():
    from tasks.reconciler import LeaseKeeper

    store = RecordingStore()
    keeper = LeaseKeeper(store, held_ids=lambda: {"started", "waiting"})
    for job_id in ("started", "waiting", "gone"):
        keeper.hold(job_id)
    assert store.held == [], "no round trip as the message arrives"
    keeper.started("started")  # its claim wrote the lease
    keeper.release("gone")  # its claim found it ended
    keeper.renew()
    assert store.held == ["waiting"]
    keeper.renew()
    assert store.held == ["waiting"], "written once; later rounds renew it"
    assert store.renewed[-1] == ["started", "waiting"]
    keeper.hold("late")
    assert keeper.holding() == ["started", "waiting", "late"]
    assert store.held[-1] == "late", "written before a stopping worker reads what it holds"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def consumer_watch(backlog: list[int], held: list[str], clock: FakeClock):
    from tasks.consumer_watch import ConsumerWatch

    stalls: list[float] = []
    watch = ConsumerWatch(
        lambda: backlog[0], lambda: not held, lambda: stalls.append(clock.now), stall_seconds=60, clock=clock
    )
    return watch, stalls


def test_the_consumer_watch_shuts_down_a_worker_that_takes_no_waiting_message():
    clock, backlog, held = FakeClock(), [3], []
    watch, stalls = consumer_watch(backlog, held, clock)
    for _ in range(12):  # 55 s: not yet
        watch.check()
        clock.now += 5
    assert stalls == []
    watch.check()
    assert stalls == [1060.0], "messages waited a minute while this worker held none"
    clock.now += 5
    watch.check()
    assert len(stalls) == 1, "it shuts down once"


def test_the_consumer_watch_leaves_a_busy_or_consuming_worker_alone():
    clock, backlog, held = FakeClock(), [3], ["job_1"]
    watch, stalls = consumer_watch(backlog, held, clock)
    for step in range(40):
        if step == 10:
            held.clear()  # idle now, but it keeps taking messages
        if step >= 10:
            watch.received()
        watch.check()
        clock.now += 5
    backlog[0] = 0
    for _ in range(40):  # idle with nothing waiting: a quiet worker, not a stalled one
        watch.check()
        clock.now += 5
    assert stalls == []


@pytest.mark.parametrize(("level", "quiet"), [("INFO", True), ("WARNING", True), ("DEBUG", False)])
def test_celerys_per_task_lines_show_only_at_debug(level, quiet):
    import logging

    from tasks.worker import PER_TASK_LOGGERS, quiet_per_task_lines

    loggers = [logging.getLogger(name) for name in PER_TASK_LOGGERS]
    saved = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.NOTSET)
        quiet_per_task_lines(level)
        assert all(logger.level == (logging.WARNING if quiet else logging.NOTSET) for logger in loggers)
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)

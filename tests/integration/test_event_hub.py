"""The API's one reader of job events (tasks.jobs.event_hub) against real Redis, no model.

Every job a process waits on is read by one blocking XREAD; each waiter gets
only the entries after its own cursor, and a waiter that joins while the read
is blocked is taken into it.
"""

import threading
import time

import pytest

from tasks.jobs import JobService, Policy
from tasks.jobs.event_hub import BLOCK_MS
from tasks.keyspace import Keyspace


@pytest.fixture
def jobs(redis_server):
    return JobService(redis_server.client(), Policy(retention=3600), keys=Keyspace(f"t{time.time_ns()}"))


def add(jobs, job_id, text):
    return jobs.redis.xadd(jobs.keys.events(job_id), {"type": "delta", "data": text}).decode()


def xread_calls(jobs):
    return jobs.redis.info("commandstats").get("cmdstat_xread", {}).get("calls", 0)


def test_each_waiter_gets_its_own_jobs_entries_in_order(jobs):
    waiters = {job_id: jobs.watch(job_id) for job_id in ("a", "b", "c")}
    for step in range(5):
        for job_id in waiters:
            add(jobs, job_id, f"{job_id}{step}")
    for job_id, waiter in waiters.items():
        seen: list[str] = []
        while len(seen) < 5:
            batch = waiter.read(5_000)
            assert batch, f"no entries for {job_id}"
            seen += [fields["data"] for _, fields in batch]
        assert seen == [f"{job_id}{step}" for step in range(5)]
        waiter.close()


def test_one_read_serves_every_waiter_of_a_step(jobs):
    """Entries written for 20 jobs at once reach all 20 waiters through a handful of XREADs, not 20."""
    waiters = [jobs.watch(f"j{i}") for i in range(20)]
    idle = waiters[0].read(50)  # the reader now blocks on all 20
    assert idle == []
    before = xread_calls(jobs)
    pipe = jobs.redis.pipeline(transaction=True)
    for i in range(20):
        pipe.xadd(jobs.keys.events(f"j{i}"), {"type": "delta", "data": str(i)})
    pipe.execute()
    for i, waiter in enumerate(waiters):
        assert [fields["data"] for _, fields in waiter.read(5_000)] == [str(i)]
        waiter.close()
    assert xread_calls(jobs) - before <= 3


def test_a_resumed_waiter_gets_only_what_follows_its_cursor(jobs):
    first = add(jobs, "r", "one")
    add(jobs, "r", "two")
    with jobs.watch("r") as from_start, jobs.watch("r", first) as resumed:
        assert [f["data"] for _, f in resumed.read(5_000)] == ["two"]
        seen = [f["data"] for _, f in from_start.read(5_000)]
        while len(seen) < 2:
            seen += [f["data"] for _, f in from_start.read(5_000)]
        assert seen == ["one", "two"]


def test_a_waiter_that_joins_a_blocked_read_is_taken_into_it(jobs):
    with jobs.watch("busy") as busy:
        assert busy.read(100) == []  # the reader blocks on "busy" alone
        late = jobs.watch("late")
        arrived = threading.Event()

        def read_late():
            if late.read(10_000):
                arrived.set()

        reader = threading.Thread(target=read_late)
        reader.start()
        add(jobs, "late", "hello")
        assert arrived.wait(10), "the late waiter never got its entry"
        reader.join()
        late.close()


def test_a_cursor_redis_would_refuse_never_joins_the_shared_read(jobs):
    """One bad id would fail the whole XREAD, every other waiter of the process with it."""
    with jobs.watch("fine") as fine:
        for bad in ("18446744073709551616-0", "1-x", "nonsense", "-1", "\u0661-1"):
            with pytest.raises(ValueError):
                jobs.watch("bad", bad)
        add(jobs, "fine", "still served")
        assert [f["data"] for _, f in fine.read(5_000)] == ["still served"]


def test_a_stream_is_read_no_more_once_its_waiter_has_the_end(jobs):
    """The reply's request still holds its waiter after the end event; the hub must not read for it."""
    with jobs.watch("ending") as waiter:
        jobs.redis.xadd(jobs.keys.events("ending"), {"type": "end", "status": "completed"})
        assert [f["type"] for _, f in waiter.read(5_000)] == ["end"]
        before = xread_calls(jobs)
        time.sleep(3 * BLOCK_MS / 1000)  # an absence: three of the hub's longest reads would have run
        assert xread_calls(jobs) == before
        with jobs.watch("next") as following:  # the idle hub still serves whoever joins next
            add(jobs, "next", "hello")
            assert [f["data"] for _, f in following.read(5_000)] == ["hello"]

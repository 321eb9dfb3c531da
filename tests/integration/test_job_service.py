"""The job service's atomic steps against a real redis-server, with no worker: fast and exact.

Each test drives the service the way the API, a worker and the reconciler do,
and checks the record, the event stream, the queue order and the billing.
"""

import datetime as dt
import time

import pytest

from tasks.jobs import ALREADY_ENDED, CANCELLED_QUEUED, CANCELLED_RUNNING, Idempotency, JobService, Policy
from tasks.jobs.policy import STREAM_GRACE_SECONDS
from tasks.jobs.recovery import ENDED_CANCELLED, LEFT_ALONE, REQUEUED
from tasks.keyspace import Keyspace
from tasks.protocol.errors import APIError, NotFound
from tasks.protocol.requests import GenerationRequest
from tests.harness import RecordingBroker
from workers.sampling import Sampling

USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


@pytest.fixture()
def jobs(redis_server, request):
    """A service on its own key prefix, so tests never see each other's jobs."""
    keys = Keyspace(f"t{time.time_ns()}")
    broker = RecordingBroker(redis_server.client(), keys.job("broker"))
    return JobService(redis_server.client(), Policy(retention=3600), broker=broker, keys=keys)


def requeue(jobs, job_id, cut_off):
    """What a reconciler round does for one stale lease, holding the round's lock."""
    jobs.redis.set(jobs.keys.reconciler_lock, "round", px=10_000)
    return jobs.requeue(job_id, cut_off, "round")


def generation(model="m", max_tokens=5):
    return GenerationRequest("chat", model, 1, [[1, 2, 3]], Sampling(max_tokens=max_tokens, seed=4))


def end_events(jobs, job_id):
    return [f for _, f in jobs.redis.xrange(jobs.keys.events(job_id)) if f[b"type"] == b"end"]


def billed(jobs, owner):
    day = dt.datetime.now(dt.timezone.utc).date().isoformat()
    return {k.decode(): int(v) for k, v in jobs.redis.hgetall(jobs.keys.usage(owner, day)).items()}


def test_submit_writes_the_record_then_sends_the_message(jobs):
    job = jobs.submit(owner="k1", request=generation(), priority=3)
    assert jobs.broker.sent == [job.id] and job.position == 0
    stored = jobs.get(job.id)
    assert (stored.status, stored.owner, stored.priority, stored.attempts) == ("queued", "k1", 3, 0)
    assert stored.request == generation()


def test_a_job_is_claimed_once_and_only_its_attempt_may_finish_it(jobs):
    job = jobs.submit(owner="k1", request=generation())
    claim = jobs.claim(job.id, "m")
    assert claim is not None and claim.attempt == 1 and claim.request == generation() and claim.owner == "k1"
    assert jobs.claim(job.id, "m") is None, "a redelivered message must not run a started job again"
    assert jobs.finish(claim, "completed", result={"ok": 1}, usage=USAGE)
    assert not jobs.finish(claim, "completed", result={"ok": 2}, usage=USAGE), "a job ends once"
    assert jobs.get(job.id).result == {"ok": 1} and len(end_events(jobs, job.id)) == 1
    assert billed(jobs, "k1") == {"m:prompt": 3, "m:completion": 5, "m:requests": 1}


def test_a_superseded_attempt_is_neither_written_nor_billed(jobs):
    job = jobs.submit(owner="k2", request=generation())
    first = jobs.claim(job.id, "m")
    _stale, cut_off = jobs.stale_leases(0)  # every lease so far counts as stale
    assert requeue(jobs, job.id, cut_off) == REQUEUED and jobs.broker.sent[-1] == job.id
    second = jobs.claim(job.id, "m")
    assert second.attempt == 2
    assert not jobs.finish(first, "completed", result={"from": "first"}, usage=USAGE)
    assert billed(jobs, "k2") == {}, "the losing attempt must not bill"
    assert jobs.finish(second, "completed", result={"from": "second"}, usage=USAGE)
    assert jobs.get(job.id).result == {"from": "second"} and billed(jobs, "k2")["m:requests"] == 1


def test_a_requeued_job_goes_to_the_tail_of_its_priority(jobs):
    old = jobs.submit(owner="k", request=generation())
    jobs.claim(old.id, "m")
    newer = [jobs.submit(owner="k", request=generation()) for _ in range(3)]
    _stale, cut_off = jobs.stale_leases(0)
    requeue(jobs, old.id, cut_off)
    assert sorted(jobs.position(jobs.get(j.id)) for j in newer) == [0, 1, 2]
    assert jobs.position(jobs.get(old.id)) == 3, "position must match the broker, where it went to the tail"


def test_a_lease_renewed_after_the_cut_off_is_not_requeued(jobs):
    job = jobs.submit(owner="k", request=generation())
    jobs.claim(job.id, "m")
    _stale, cut_off = jobs.stale_leases(0)
    jobs.renew_leases([job.id])  # the worker was only slow
    assert requeue(jobs, job.id, cut_off) == LEFT_ALONE and jobs.get(job.id).status == "in_progress"


def test_cancel_queued_ends_it_and_cancel_running_bills_what_ran(jobs):
    queued = jobs.submit(owner="k3", request=generation())
    assert jobs.cancel(queued) == CANCELLED_QUEUED and len(end_events(jobs, queued.id)) == 1
    assert jobs.claim(queued.id, "m") is None, "a cancelled job never runs"
    assert jobs.cancel(jobs.get(queued.id)) == ALREADY_ENDED
    running = jobs.submit(owner="k3", request=generation())
    claim = jobs.claim(running.id, "m")
    assert jobs.cancel(jobs.get(running.id)) == CANCELLED_RUNNING
    assert jobs.finish(claim, "completed", result={"late": True}, usage=USAGE)
    record = jobs.get(running.id)
    assert record.status == "cancelled" and record.result is None and record.usage == USAGE
    assert billed(jobs, "k3")["m:completion"] == 5


def test_a_cancelled_job_whose_worker_died_still_ends(jobs):
    job = jobs.submit(owner="k", request=generation())
    jobs.claim(job.id, "m")
    jobs.cancel(jobs.get(job.id))
    _stale, cut_off = jobs.stale_leases(0)
    assert requeue(jobs, job.id, cut_off) == ENDED_CANCELLED
    assert len(end_events(jobs, job.id)) == 1 and jobs.get(job.id).status == "cancelled"


def test_an_overdue_job_expires_instead_of_running(jobs):
    job = jobs.submit(owner="k", request=generation(), expires_in=0.01)
    deadline = time.monotonic() + 5
    while not jobs.overdue() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert jobs.claim(job.id, "m") is None
    assert jobs.get(job.id).status == "expired" and len(end_events(jobs, job.id)) == 1


def test_idempotency_returns_the_first_job_and_refuses_another_body(jobs):
    first = jobs.submit(owner="k", request=generation(), idempotency=Idempotency.of("abc", b"body"))
    again = jobs.submit(owner="k", request=generation(), idempotency=Idempotency.of("abc", b"body"))
    assert again.id == first.id and len(jobs.broker.sent) == 1
    other_key = jobs.submit(owner="other", request=generation(), idempotency=Idempotency.of("abc", b"body"))
    assert other_key.id != first.id, "keys are scoped to their owner"
    with pytest.raises(APIError) as refused:
        jobs.submit(owner="k", request=generation(), idempotency=Idempotency.of("abc", b"different"))
    assert refused.value.status == 409


def test_another_owner_cannot_see_a_job(jobs):
    job = jobs.submit(owner="k", request=generation())
    with pytest.raises(NotFound):
        jobs.owned(job.id, "intruder")
    assert jobs.owned(job.id, "k").id == job.id


def test_a_synchronous_answer_rides_its_end_event_and_frees_its_wait_slot(jobs):
    import dataclasses
    import json

    waiting = jobs.keys.waiting("k")
    unlisted = jobs.submit(owner="k", request=generation(), wait_seconds=60)
    claim = jobs.claim(unlisted.id, "m", "w")
    assert jobs.redis.zscore(waiting, unlisted.id) is not None
    assert jobs.finish(claim, "completed", result={"answer": 42}, usage=USAGE)
    assert json.loads(end_events(jobs, unlisted.id)[0][b"result"]) == {"answer": 42}
    assert jobs.redis.zscore(waiting, unlisted.id) is None, "its caller has the answer once it reads the event"
    kept = jobs.get(unlisted.id)
    assert kept.result is None and kept.request is None, "the record keeps only what billing needs, at once"
    assert kept.status == "completed" and kept.usage == USAGE
    assert 0 < jobs.redis.ttl(jobs.keys.events(unlisted.id)) <= STREAM_GRACE_SECONDS, "the event outlives it briefly"
    assert jobs.redis.ttl(jobs.keys.job(unlisted.id)) > 0, "the trimmed record still expires"

    streamed = jobs.submit(owner="k", request=dataclasses.replace(generation(), stream=True), wait_seconds=60)
    listed = jobs.submit(owner="k", request=generation(), listed=True)
    for job in (streamed, listed):
        assert jobs.finish(jobs.claim(job.id, "m", "w"), "completed", result={"answer": 1}, usage=USAGE)
        assert b"result" not in end_events(jobs, job.id)[0], "a stream or a listed job is read from its record"
    assert jobs.redis.zscore(waiting, streamed.id) is not None, "a streamed caller frees its slot when it collects"

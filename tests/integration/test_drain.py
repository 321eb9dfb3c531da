"""Graceful drain: the job service's hand-back steps a draining worker takes (real Redis).

They drive the steps as test_job_trust does the reconciler's. A real worker
and a real API SIGTERMed under load are tests/cluster/test_drain_signals.py.
"""

from __future__ import annotations

import time

import pytest

from tasks.jobs import JobService, Policy, Superseded
from tasks.jobs.recovery import FAILED_FOR_GOOD, REQUEUED
from tasks.keyspace import Keyspace
from tasks.protocol.requests import GenerationRequest
from tests.harness import RecordingBroker
from workers.outputs import Choice, Delta
from workers.sampling import Sampling

USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def service(redis_server, **policy) -> JobService:
    keys = Keyspace(f"t{time.time_ns()}")
    broker = RecordingBroker(redis_server.client(), keys.job("broker"))
    return JobService(redis_server.client(), Policy(retention=3600, **policy), broker=broker, keys=keys)


def generation(model="m"):
    return GenerationRequest("chat", model, 1, [[1, 2, 3]], Sampling(max_tokens=5, seed=4))


def ends(jobs, job_id):
    return [f for _, f in jobs.redis.xrange(jobs.keys.events(job_id)) if f[b"type"] == b"end"]


def test_a_handed_back_job_is_queued_again_at_once_and_its_attempt_is_fenced(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    first = jobs.claim(job.id, "m", "draining")
    assert jobs.hand_back(first)
    record = jobs.get(job.id)
    assert record.status == "queued" and jobs.broker.sent[-1] == job.id, "queued again and its message re-sent"
    assert jobs.redis.zscore(jobs.keys.leases, job.id) is None and jobs.position(record) == 0
    assert not jobs.hand_back(first), "once"
    second = jobs.claim(job.id, "m", "other")
    assert second.attempt == 2
    with pytest.raises(Superseded):
        jobs.append_delta(first, Delta(0, Choice(0, text="stale")))
    assert not jobs.hand_back(first), "the new attempt is not handed back by the old one"
    assert not jobs.finish(first, "completed", result={"from": "first"}, usage=USAGE)
    assert jobs.finish(second, "completed", result={"from": "second"}, usage=USAGE)
    assert jobs.get(job.id).result == {"from": "second"} and len(ends(jobs, job.id)) == 1


def test_hand_backs_do_not_count_towards_the_poison_cap(redis_server):
    jobs = service(redis_server, max_attempts=2)
    job = jobs.submit(owner="k", request=generation())
    for worker in ("stopping-1", "stopping-2"):
        assert jobs.hand_back(jobs.claim(job.id, "m", worker))
    jobs.claim(job.id, "m", "crashes")
    jobs.redis.set(jobs.keys.reconciler_lock, "round", px=10_000)
    _stale, cut_off = jobs.stale_leases(0)
    assert jobs.requeue(job.id, cut_off, "round") == REQUEUED, "two drains and one crash: not poison yet"
    jobs.claim(job.id, "m", "crashes-again")
    _stale, cut_off = jobs.stale_leases(0)
    assert jobs.requeue(job.id, cut_off, "round") == FAILED_FOR_GOOD


def test_a_cancelled_or_ended_job_is_not_handed_back(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    claim = jobs.claim(job.id, "m", "w")
    jobs.cancel(jobs.get(job.id))
    assert not jobs.hand_back(claim), "its running attempt writes the cancelled end"
    assert jobs.finish(claim, "completed", result={}, usage=USAGE) and jobs.get(job.id).status == "cancelled"


def test_a_received_job_never_started_is_let_go_once(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    jobs.hold_leases([job.id])
    sent = len(jobs.broker.sent)
    assert jobs.unhold(job.id) and jobs.redis.zscore(jobs.keys.leases, job.id) is None
    assert len(jobs.broker.sent) == sent + 1, "its message is re-sent at once"
    assert not jobs.unhold(job.id), "a second look re-sends nothing"
    jobs.hold_leases([job.id])
    jobs.claim(job.id, "m", "w")
    assert not jobs.unhold(job.id), "a started job keeps its lease"


def test_a_late_hold_leaves_a_started_or_ended_job_alone(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    claim = jobs.claim(job.id, "m", "w")
    started_lease = jobs.redis.zscore(jobs.keys.leases, job.id)
    assert jobs.hold_leases([job.id]) == 0 and jobs.redis.zscore(jobs.keys.leases, job.id) == started_lease
    assert jobs.finish(claim, "completed", result={}, usage=USAGE)
    assert jobs.hold_leases([job.id]) == 0 and jobs.redis.zscore(jobs.keys.leases, job.id) is None, "no lease revived"

"""The job service's guards against poison, orphans, stray attempts and greedy keys (real Redis, no worker).

Each test drives the service the way the API, a worker and the reconciler do
and checks what the issue "trust" promises: every job ends once, is billed
once, and one key or one request cannot take the service from the others.
"""

import time

import pytest

from tasks.celery_app import create_celery
from tasks.dispatch import CeleryBroker, broker_lists, message_ids
from tasks.jobs import JobService, Policy, Superseded
from tasks.jobs.policy import STREAM_GRACE_SECONDS
from tasks.jobs.recovery import FAILED_FOR_GOOD, LOCK_LOST, REQUEUED
from tasks.keyspace import Keyspace
from tasks.protocol.errors import APIError
from tasks.protocol.requests import GenerationRequest
from tasks.reconciler import Reconciler
from tests.harness import RecordingBroker, wait_until
from workers.outputs import Choice, Delta
from workers.sampling import Sampling

USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def service(redis_server, broker=None, **policy) -> JobService:
    keys = Keyspace(f"t{time.time_ns()}")
    broker = broker or RecordingBroker(redis_server.client(), keys.job("broker"))
    return JobService(redis_server.client(), Policy(retention=3600, **policy), broker=broker, keys=keys)


def generation(model="m", prompt=(1, 2, 3)):
    return GenerationRequest("chat", model, 1, [list(prompt)], Sampling(max_tokens=5, seed=4))


def stale_round(jobs, job_id, token="round"):
    """One reconciler round's view of a job whose worker stopped renewing."""
    jobs.redis.set(jobs.keys.reconciler_lock, token, px=10_000)
    _stale, cut_off = jobs.stale_leases(0)
    return jobs.requeue(job_id, cut_off, "round")


def ends(jobs, job_id):
    return [f for _, f in jobs.redis.xrange(jobs.keys.events(job_id)) if f[b"type"] == b"end"]


def test_a_job_whose_worker_dies_on_every_attempt_fails_after_the_cap(redis_server):
    jobs = service(redis_server, max_attempts=2)
    poison = jobs.submit(owner="k", request=generation())
    jobs.claim(poison.id, "m", "w1")
    assert stale_round(jobs, poison.id) == REQUEUED
    jobs.claim(poison.id, "m", "w2")
    assert stale_round(jobs, poison.id) == FAILED_FOR_GOOD
    record = jobs.get(poison.id)
    assert record.status == "failed" and record.error_status == 500 and record.worker == "w2"
    assert record.error["error"]["code"] == "job_failed_repeatedly" and "2 times" in record.error["error"]["message"]
    assert len(ends(jobs, poison.id)) == 1 and jobs.claim(poison.id, "m") is None
    assert jobs.redis.zcard(jobs.keys.open_jobs("k")) == 0, "its key's open slot is given back"


def test_a_round_that_lost_its_lock_changes_nothing(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    jobs.claim(job.id, "m")
    assert stale_round(jobs, job.id, token="another round") == LOCK_LOST
    assert jobs.get(job.id).status == "in_progress" and len(jobs.broker.sent) == 1


def test_a_superseded_attempt_cannot_stream_into_the_new_one(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    first = jobs.claim(job.id, "m")
    stale_round(jobs, job.id)
    second = jobs.claim(job.id, "m")
    delta = Delta(0, Choice(0, "hi", token_ids=[5]))
    with pytest.raises(Superseded):
        jobs.append_delta(first, delta)
    assert jobs.append_delta(second, delta)
    jobs.cancel(jobs.get(job.id))
    assert not jobs.append_delta(second, delta), "a cancelled job's stream takes no more tokens"
    assert jobs.emitted(job.id) == 1


def test_a_key_at_its_open_jobs_cap_gets_a_429_with_retry_after(redis_server):
    jobs = service(redis_server, max_open_per_key=2)
    first = jobs.submit(owner="greedy", request=generation())
    jobs.submit(owner="greedy", request=generation())
    with pytest.raises(APIError) as refused:
        jobs.submit(owner="greedy", request=generation())
    assert refused.value.status == 429 and refused.value.code == "too_many_open_jobs"
    assert int(refused.value.headers["Retry-After"]) >= 1
    assert jobs.submit(owner="someone else", request=generation()), "other keys are not affected"
    claim = jobs.claim(first.id, "m")
    jobs.finish(claim, "completed", result={}, usage=USAGE)
    assert jobs.submit(owner="greedy", request=generation()), "a finished job frees its slot"


def test_a_key_at_its_waiting_cap_gets_a_429_until_a_waiter_leaves(redis_server):
    jobs = service(redis_server, max_waiting_per_key=1)
    waiting = jobs.submit(owner="k", request=generation(), wait_seconds=60)
    with pytest.raises(APIError) as refused:
        jobs.submit(owner="k", request=generation(), wait_seconds=60)
    assert refused.value.status == 429 and refused.value.code == "too_many_concurrent_requests"
    assert jobs.submit(owner="k", request=generation()), "queue jobs hold no connection"
    jobs.release(waiting)
    assert jobs.submit(owner="k", request=generation(), wait_seconds=60)


def test_a_waiting_slot_of_a_crashed_caller_frees_itself(redis_server):
    jobs = service(redis_server, max_waiting_per_key=1)
    jobs.submit(owner="k", request=generation(), wait_seconds=0.05)  # its API process died: nobody releases it
    deadline = time.monotonic() + 5
    while jobs.redis.zcount(jobs.keys.waiting("k"), "-inf", jobs.server_time()) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert jobs.submit(owner="k", request=generation(), wait_seconds=60)


@pytest.mark.parametrize("carried", [True, False], ids=["answered-from-its-end-event", "collected-from-its-record"])
def test_a_delivered_synchronous_job_keeps_only_what_billing_needs(redis_server, carried):
    jobs = service(redis_server, sync_retention=120)
    job = jobs.submit(owner="k", request=generation(), wait_seconds=60)
    claim = jobs.claim(job.id, "m")
    jobs.append_delta(claim, Delta(0, Choice(0, "hi", token_ids=[5])))
    if not carried:
        jobs.release(job)  # its caller's slot lapsed: the body stays in the record for a late read
    jobs.finish(claim, "completed", result={"answer": 42}, usage=USAGE)
    if carried:
        assert 0 < jobs.redis.ttl(jobs.keys.events(job.id)) <= STREAM_GRACE_SECONDS, "the event goes soon after"
    else:
        assert jobs.collect(job).result == {"answer": 42}, "the caller gets the whole result once"
        assert not jobs.redis.exists(jobs.keys.events(job.id))
    kept = jobs.get(job.id)
    assert kept.result is None and kept.request is None and kept.usage == USAGE and kept.endpoint == "chat"
    assert kept.status == "completed"
    assert 0 < jobs.redis.ttl(jobs.keys.job(job.id)) <= 120
    assert jobs.redis.memory_usage(jobs.keys.job(job.id)) <= 1024, "a small listpack, not a hash table"
    assert not jobs.redis.exists(jobs.keys.tombstone(job.id)), "no tombstone for a job nobody lists"


def test_a_delivered_streamed_job_keeps_its_tokens_a_short_grace_for_other_readers(redis_server):
    jobs = service(redis_server)
    request = GenerationRequest("chat", "m", 1, [[1, 2]], Sampling(max_tokens=5), stream=True)
    job = jobs.submit(owner="k", request=request, wait_seconds=60)
    claim = jobs.claim(job.id, "m")
    jobs.append_delta(claim, Delta(0, Choice(0, "hi", token_ids=[5])))
    jobs.finish(claim, "completed", result={}, usage=USAGE)
    jobs.collect(job)
    assert 0 < jobs.redis.ttl(jobs.keys.events(job.id)) <= 60 and jobs.emitted(job.id) == 2


def test_a_listed_job_keeps_its_result_after_a_read(redis_server):
    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation(), listed=True)
    claim = jobs.claim(job.id, "m")
    jobs.finish(claim, "completed", result={"answer": 42}, usage=USAGE)
    jobs.collect(job)
    assert jobs.get(job.id).result == {"answer": 42} and jobs.get(job.id).request == generation()
    assert 3000 < jobs.redis.ttl(jobs.keys.job(job.id)) <= 3600


def test_new_jobs_are_refused_with_a_503_above_the_memory_high_water(redis_server):
    jobs = service(redis_server, memory_high_water=0.5)
    client = redis_server.client()
    used = int(client.info("memory")["used_memory"])
    previous = client.config_get("maxmemory")["maxmemory"]
    client.config_set("maxmemory", used * 3 // 2)  # used is two thirds of it: above a high water of one half
    try:
        with pytest.raises(APIError) as refused:
            jobs.submit(owner="k", request=generation())
        assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    finally:
        client.config_set("maxmemory", previous)
    assert client.zcard(jobs.keys.queue("m")) == 0, "nothing was queued"


def test_the_orphan_sweep_resends_a_job_whose_broker_message_is_gone(redis_server, base_config):
    model = f"orphan{time.time_ns()}"
    celery = create_celery(base_config)
    jobs = service(redis_server, broker=CeleryBroker(celery))
    sweep = Reconciler(jobs, 30, 1, models=[model], broker_ids=lambda m: message_ids(jobs.redis, m), orphan_after=0.01)
    kept, lost = (jobs.submit(owner="k", request=generation(model)) for _ in range(2))
    assert message_ids(jobs.redis, model) == {kept.id, lost.id}
    for key in broker_lists(model):
        for raw in jobs.redis.lrange(key, 0, -1):
            if lost.id.encode() in raw:
                jobs.redis.lrem(key, 0, raw)
    assert message_ids(jobs.redis, model) == {kept.id}
    # Only jobs queued longer than orphan_after count: a fresh job's message may still be on its way.
    wait_until(lambda: len(jobs.unleased_queued(model, 0.01)) == 2, 5, "both jobs to age past orphan_after")
    assert sweep.run_once()[2] == 1
    assert message_ids(jobs.redis, model) == {kept.id, lost.id}, "re-sent once, the other left alone"
    for key in broker_lists(model):
        jobs.redis.delete(key)


def test_leases_and_heartbeats_use_redis_time(redis_server):
    from tasks.heartbeat import Heartbeat, live_workers

    jobs = service(redis_server)
    job = jobs.submit(owner="k", request=generation())
    jobs.hold_leases([job.id])
    assert abs(jobs.redis.zscore(jobs.keys.leases, job.id) - jobs.server_time()) < 5
    model = f"clock{time.time_ns()}"
    Heartbeat(jobs.redis, model, "w", lambda: {"requests": 0, "healthy": True}).beat()
    assert live_workers(jobs.redis, model, ttl=5) == 1
    Heartbeat(jobs.redis, model, "w", lambda: {"requests": 0, "healthy": False}).beat()
    assert live_workers(jobs.redis, model, ttl=5) == 0, "a worker whose engine is down does not draw jobs"

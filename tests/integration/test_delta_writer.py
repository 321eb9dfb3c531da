"""The worker's delta writer (tasks.jobs.delta_writer) against real Redis, no model.

Many jobs' deltas go out in one Lua step; each job's stream keeps its order,
a cancelled job's task learns to stop, a superseded attempt learns it lost,
and a task that closes its stream finds every delta written.
"""

import json
import threading
import time

import pytest

from tasks.jobs import JobService, Policy, Superseded
from tasks.keyspace import Keyspace
from tasks.protocol.requests import GenerationRequest
from workers.outputs import Choice, Delta
from workers.sampling import Sampling


@pytest.fixture
def jobs(redis_server):
    service = JobService(redis_server.client(), Policy(retention=3600), keys=Keyspace(f"t{time.time_ns()}"))
    yield service
    service.deltas.stop()


def started(jobs):
    request = GenerationRequest("chat", "m", 1, [[1, 2, 3]], Sampling(max_tokens=5, seed=4))
    job = jobs.submit(owner="k", request=request)
    return jobs.claim(job.id, "m")


def streamed_texts(jobs, job_id):
    entries = jobs.redis.xrange(jobs.keys.events(job_id))
    return [json.loads(fields[b"data"])["t"] for _, fields in entries if fields[b"type"] == b"delta"]


def test_deltas_of_many_jobs_land_in_order_and_close_waits_for_them(jobs):
    claims = [started(jobs) for _ in range(8)]
    streams = [jobs.deltas.open(claim) for claim in claims]

    def generate(stream):
        for token in range(50):
            assert stream.send(Delta(0, Choice(0, f"{token} ")))
        stream.close()

    threads = [threading.Thread(target=generate, args=(stream,)) for stream in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for claim in claims:
        assert streamed_texts(jobs, claim.job_id) == [f"{token} " for token in range(50)]


def test_one_call_carries_the_deltas_of_several_jobs(jobs):
    """Handed over before the writer runs, three jobs' deltas go out in one Lua step."""
    claims = [started(jobs) for _ in range(3)]
    streams = [jobs.deltas.open(claim) for claim in claims]
    jobs.deltas.stop()  # write by hand from here, so the batch is the test's to see
    for stream in streams:
        stream.send(Delta(0, Choice(0, "a")))
        stream.send(Delta(0, Choice(0, "b")))
    calls = jobs.redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert jobs.deltas.write_pending(wait=0) == 6
    assert jobs.redis.info("commandstats")["cmdstat_evalsha"]["calls"] == calls + 1
    for stream in streams:
        stream.close()
        assert streamed_texts(jobs, stream.claim.job_id) == ["a", "b"]


def test_a_cancelled_job_is_told_to_stop_and_takes_no_more_tokens(jobs):
    claim = started(jobs)
    stream = jobs.deltas.open(claim)
    assert stream.send(Delta(0, Choice(0, "first")))
    stream.wait()
    jobs.cancel(jobs.get(claim.job_id))
    stream.send(Delta(0, Choice(0, "refused")))
    stream.wait()
    assert not stream.send(Delta(0, Choice(0, "never sent")))
    stream.close()
    assert streamed_texts(jobs, claim.job_id) == ["first"]


def test_a_superseded_attempt_learns_it_when_it_closes(jobs):
    first = started(jobs)
    jobs.redis.hset(jobs.keys.job(first.job_id), "attempts", first.attempt + 1)  # re-queued and re-claimed
    stream = jobs.deltas.open(first)
    stream.send(Delta(0, Choice(0, "stale")))
    with pytest.raises(Superseded):
        stream.close()
    assert streamed_texts(jobs, first.job_id) == []

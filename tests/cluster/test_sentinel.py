"""Redis Sentinel: every client follows a failover (one master, one replica, one Sentinel, all real).

The master is SIGKILLed while the API accepts jobs. Submissions answer 503
(never 500) until the Sentinel has promoted the replica, then 202 again;
every job accepted before, during and after is in the new master's job store
(the API waits for the replica before it answers: INFERQ_REDIS_WAIT_REPLICAS),
and the orphan sweep re-sends any broker message the failover lost. The
last test runs a real worker through the failover under load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from tasks.celery_app import create_celery
from tasks.dispatch import CeleryBroker, message_ids, queue_name
from tasks.jobs import JobService, Policy
from tasks.reconciler import Reconciler
from tasks.redis_client import redis_client
from tasks.settings import Settings
from tests.harness import CHAT_MODEL, GHOST_MODEL, ServiceEnv, WorkerProcess, wait_until, write_models_file

#: The Sentinel calls the master down after 1 s (devstack.sentinel); a failover takes a few more.
PAUSE_BOUND = 20.0


@dataclass
class Timeline:
    """Every submission's answer, in order, with when it came (seconds after the master was killed)."""

    answers: list[tuple[float, int]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    def pause(self) -> float:
        """Seconds from the first refused submission to the first accepted one after it."""
        refused = [at for at, status in self.answers if status == 503]
        if not refused:
            return 0.0
        after = [at for at, status in self.answers if status == 202 and at > refused[0]]
        return (after[0] if after else refused[-1]) - refused[0]


@pytest.fixture()
def sentinel_stack(session_dir, request):
    from app import create_app
    from app.auth.keys import KeyStore
    from devstack.sentinel import SentinelGroup
    from tests.conftest import keyed_client_class

    directory = session_dir / f"sentinel-{request.node.name[:40]}-{time.time_ns()}"
    directory.mkdir()
    group = SentinelGroup(directory).start()
    models_file = write_models_file(directory)
    settings = Settings.load(redis_url=group.url, models_file=str(models_file), redis_wait_replicas=1)
    key, _ = KeyStore(redis_client(group.url)).create(name="sentinel-tests", rpm=1_000_000)
    app = create_app(settings)
    app.test_client_class = keyed_client_class(key)
    yield group, app, settings
    group.stop()


def submit_through_failover(client, group, model: str, before: int, after: int, body: dict) -> Timeline:
    """Submit `before` jobs, SIGKILL the master, and go on until `after` more were accepted."""
    timeline = Timeline()
    killed_at: float | None = None
    deadline = time.monotonic() + 120
    while len(timeline.accepted) < before + after and time.monotonic() < deadline:
        if killed_at is None and len(timeline.accepted) == before:
            group.kill_master()
            killed_at = time.monotonic()
        reply = client.post("/queue/chat/completions", json={"model": model, **body})
        assert reply.status_code in (202, 503), reply.get_data(as_text=True)
        timeline.answers.append((time.monotonic() - (killed_at or time.monotonic()), reply.status_code))
        if reply.status_code == 202:
            timeline.accepted.append(reply.get_json()["id"])
        else:
            assert reply.get_json()["error"]["code"] == "store_unavailable" and reply.headers["Retry-After"]
            time.sleep(0.05)
    assert len(timeline.accepted) == before + after, "submissions resume after the failover"
    return timeline


def test_the_job_store_broker_and_limiter_follow_a_failover(sentinel_stack):
    group, app, settings = sentinel_stack
    client = app.test_client()
    old_master = group.master_port()
    timeline = submit_through_failover(
        client, group, GHOST_MODEL, before=10, after=10, body={"messages": [{"role": "user", "content": "hi"}]}
    )
    new_master = group.master_port()
    assert new_master != old_master
    print(
        f"\nsentinel failover: submissions got 503 for {timeline.pause():.2f} s "
        f"({sum(1 for _, s in timeline.answers if s == 503)} refused, {len(timeline.accepted)} accepted)"
    )
    assert timeline.pause() < PAUSE_BOUND

    store = app.extensions["inferq.jobs"]
    assert all(store.get(job_id).status == "queued" for job_id in timeline.accepted), "no accepted job was lost"
    # A job and its message are one write, replicated together; a message the failover
    # lost anyway, the sweep sends again.
    celery = create_celery(settings)
    sweeper = JobService(redis_client(settings.redis_url), Policy(), broker=CeleryBroker(celery))
    reconciler = Reconciler(
        sweeper, 30, 5, models=[GHOST_MODEL], broker_ids=lambda m: message_ids(sweeper.redis, m), orphan_after=0
    )
    lost = set(timeline.accepted) - message_ids(store.redis, GHOST_MODEL)
    print(f"the failover lost {len(lost)} broker message(s); the orphan sweep re-sends them")
    assert reconciler.run_once()[2] == len(lost)
    assert set(timeline.accepted) <= message_ids(store.redis, GHOST_MODEL)
    with celery.connection_for_read() as connection:  # a consumer reads from the new master
        message = connection.default_channel.basic_get(queue_name(GHOST_MODEL), no_ack=True)
        assert message is not None and message.headers["id"] in timeline.accepted
    limited = client.get("/v1/models")
    assert limited.status_code == 200 and "X-RateLimit-Limit" in limited.headers, "the limiter counts on the new master"


def test_a_worker_runs_every_accepted_job_once_through_a_failover(sentinel_stack, session_dir):
    group, app, settings = sentinel_stack
    env = ServiceEnv(
        group.url,
        settings.models_file,
        INFERQ_REDIS_WAIT_REPLICAS="1",
        INFERQ_ORPHAN_SWEEP_SECONDS="5",
        INFERQ_FILES_DIR=str(session_dir / "files"),
    )
    worker = WorkerProcess(env, log_name="worker-sentinel.log").start()
    try:
        short = {"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
        timeline = submit_through_failover(app.test_client(), group, CHAT_MODEL, before=20, after=20, body=short)
        store = app.extensions["inferq.jobs"]

        def all_ended() -> bool:
            if worker.process.poll() is not None:
                # Its consumer did not survive the failover and it shut itself down
                # (tasks.consumer_watch): be its supervisor, as the README asks.
                worker.start(wait=False)
            return all(store.get(job_id).ended for job_id in timeline.accepted)

        wait_until(all_ended, 600, "every accepted job to end", interval=1)
    finally:
        worker.stop()
    statuses = {store.get(job_id).status for job_id in timeline.accepted}
    ends = [
        sum(1 for _, f in store.redis.xrange(store.keys.events(job_id)) if f[b"type"] == b"end")
        for job_id in timeline.accepted
    ]
    print(
        f"\nsentinel failover under load: submissions got 503 for {timeline.pause():.2f} s; "
        f"{len(timeline.accepted)} accepted, statuses {sorted(statuses)}, ends per job {sorted(set(ends))}"
    )
    assert statuses == {"completed"} and set(ends) == {1}
    assert timeline.pause() < PAUSE_BOUND

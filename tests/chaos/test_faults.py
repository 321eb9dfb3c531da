"""Ten faults, one stack: after each, every job its key accepted ended exactly once, billed as stored.

A worker SIGKILL, an API SIGKILL and a Redis SIGKILL also strike a batch
running beside the interactive load (tests/chaos/batches.py): each line ends
in exactly one of its two files, once, billed once.

Each fault gets a fresh API key and a mixed load from real clients
(synchronous and streamed chat completions from the openai SDK, queued jobs
from httpx; tests/chaos/load.py), is injected while that load runs, and is
judged from Redis alone (devstack.faults.audit): every job record the key
owns, plus every id a client was told, must have ended exactly once (one
`end` event, a terminal status), and the key's usage hash must equal the
usage its ended jobs' records hold.

The stack is shared (tests/chaos/stack.py) and the tests run in file order,
which is arranged to start as few vLLM workers as possible: the faults that
keep their worker come first, then one worker death serves three faults,
then the poison job's two deaths leave the two workers the next fault needs,
and the worker a minute behind comes last.
A test that finds the stack otherwise (an earlier one failed) starts what it
needs. A streamed job that had sent part of its answer when its worker or
engine died cannot be resent cleanly: it fails `engine_failed` (and ends
once), which is the only failure a fault may cause here besides the poison's.
"""

from __future__ import annotations

import signal
import threading

import pytest

from devstack.faults import (
    clock_skew_vars,
    delete_messages,
    engine_cores,
    log_count,
    measured_skew,
    memory_ceiling,
    worker_pid,
)
from tasks.heartbeat import worker_loads
from tests.chaos.batches import check_books, started_batch
from tests.chaos.load import Outcome, chat_body
from tests.chaos.runs import (
    Run,
    assert_every_job_ended_once,
    assert_failures_only,
    assert_no_server_errors,
    begin,
    close,
    error_codes,
    jobs_in,
    wait_ended,
    wait_running,
)
from tests.chaos.stack import MAX_ATTEMPTS, SKEW_SECONDS, ChaosStack, PoisonPlayer
from tests.harness import CHAT_MODEL, WorkerProcess, wait_until

#: What a Celery worker logs when its broker connection drops.
#: What the worker's heartbeat logs once when Redis goes away (Celery's consumer may log nothing: celery#10205).
REDIS_LOST = "inferq-heartbeat failed"
#: What a streamed job that had already sent output fails with when it is run again.
PARTIAL = "engine_failed"
#: Longer jobs, for faults that must find them still running (a cancel; a reconciler round).
LONG_TOKENS = 48
#: A fault that restarts an engine (or a worker) inside the wait: engine loads take minutes on a busy machine.
RESTART_SECONDS = 420


# -- one worker, kept ----------------------------------------------------------------------------


def test_a_sigkilled_engine_core_is_restarted_and_every_job_ends(stack):
    worker = stack.ensure_workers(1)[0]
    run = begin(stack, "2 engine core SIGKILL")
    wait_running(stack, run, 4)
    cores = engine_cores(worker.process.pid)
    assert cores, "no engine core process below the worker"
    for core in cores:
        core.kill()
    books = close(stack, run, timeout=RESTART_SECONDS)
    assert_every_job_ended_once(books)
    assert_failures_only(books, PARTIAL)
    restarts = [
        load["restarts"]
        for name, load in worker_loads(stack.client(), CHAT_MODEL).items()
        if name.endswith(f"-{worker.process.pid}")
    ]
    assert restarts and restarts[0] >= 1, "the worker should have restarted its engine"


def test_redis_sigkilled_and_restarted_on_its_append_only_file(stack):
    worker = stack.ensure_workers(1)[0]
    batch = started_batch(stack, "batch: Redis SIGKILL + restart")
    run = begin(stack, "3 Redis SIGKILL + restart")
    wait_running(stack, run, 4)
    lost_before = log_count(worker.log_path, REDIS_LOST)
    stack.redis.stop(signal.SIGKILL)  # no shutdown: only what the append-only file already holds survives
    wait_until(lambda: log_count(worker.log_path, REDIS_LOST) > lost_before, 60, "the worker to lose Redis")
    stack.redis.start()  # same port, same directory, same append-only file
    # Celery's Redis transport may exit the worker when it acks through a connection Redis
    # dropped (celery/kombu#582), or keep a consumer that takes nothing (celery#10205), which
    # the worker's consumer watch shuts down: compose's `restart: unless-stopped` starts it
    # again, and so does this test. The jobs it held are re-queued by their lapsed leases. The
    # deadline covers that restart (a worker start is ~45 s idle, minutes on a busy machine).
    books, batch_end = supervised(stack, lambda: (close(stack, run, timeout=RESTART_SECONDS), batch.finish()))
    assert_every_job_ended_once(books)
    assert_failures_only(books, PARTIAL)
    check_books(batch, batch_end)


def supervised(stack: ChaosStack, wait):
    """Run `wait` while keeping one worker up, as a process supervisor would."""
    stop = threading.Event()

    def restart_dead() -> None:
        while not stop.wait(1.0):
            stack.ensure_workers(1)

    supervisor = threading.Thread(target=restart_dead, daemon=True)
    supervisor.start()
    try:
        return wait()
    finally:
        stop.set()
        supervisor.join(RESTART_SECONDS)


def test_the_api_sigkilled_and_restarted(stack):
    stack.ensure_workers(1)
    batch = started_batch(stack, "batch: API SIGKILL + restart")
    run = begin(stack, "4 API SIGKILL + restart")
    wait_running(stack, run, 4)
    stack.kill_api()
    stack.restart_api()
    books = close(stack, run)
    assert any(o.status is None for o in run.load.outcomes), "the kill should have broken requests in flight"
    assert_every_job_ended_once(books)
    assert_failures_only(books, PARTIAL)
    check_books(batch, batch.finish())


def refused_once(stack: ChaosStack, run: Run, tries: int = 10) -> Outcome | None:
    """Submit queued jobs one at a time (each after the previous ended) until one is refused."""
    for i in range(tries):
        outcome = run.load.queue_once(1000 + i)
        if outcome.status != 202:
            return outcome
        wait_ended(stack, outcome.job_id, 60)
    return None


def test_redis_at_maxmemory_refuses_new_jobs_and_finishes_accepted_ones(stack):
    stack.ensure_workers(1)
    run = begin(stack, "10 Redis at maxmemory")
    wait_running(stack, run, 3)
    with memory_ceiling(stack.client()) as share:
        above = share()
        refused = refused_once(stack, run)
        run.load.sync_once(900)
        run.load.stream_once(901)
        books = close(stack, run)
        still = share()
    assert min(above, still) > 0.9, f"Redis should stay above the high water mark (at {above:.2f}, then {still:.2f})"
    assert_no_server_errors(run)
    assert_every_job_ended_once(books)
    assert refused is not None and refused.status == 503, (
        f"above the high water mark new jobs should get 503; got {refused.status if refused else '202 x10'}"
    )
    for outcome in (o for o in run.load.outcomes if o.status == 503):
        assert outcome.headers.get("retry-after"), f"a 503 without Retry-After: {outcome}"
        assert isinstance(outcome.body, dict) and {"message", "type", "code"} <= set(outcome.body.get("error", {}))


# -- one worker death, three faults: SIGKILL, a cancel racing it, orphans while no worker runs -------------------


def cancel_while_killing(run: Run, job_ids: list[str], worker: WorkerProcess, stack: ChaosStack) -> list[Outcome]:
    """POST .../cancel for each job and SIGKILL the worker, released at the same instant."""
    gate = threading.Barrier(len(job_ids) + 1)
    outcomes: list[Outcome] = []

    def cancel(job_id: str) -> None:
        gate.wait()
        outcomes.append(run.load.cancel(job_id))

    threads = [threading.Thread(target=cancel, args=(job_id,)) for job_id in job_ids]
    for thread in threads:
        thread.start()
    gate.wait()
    stack.kill_worker(worker)
    for thread in threads:
        thread.join(60)
    return outcomes


@pytest.fixture(scope="module")
def worker_death(stack):
    """Kill the only worker mid-run (fault 1, a batch beside it) while cancelling jobs it runs (9); orphans (6)."""
    worker = stack.ensure_workers(1)[0]
    batch = started_batch(stack, "batch: worker SIGKILL")
    killed = begin(stack, "1 worker SIGKILL")
    race = begin(stack, "9 cancel racing worker death", tokens=LONG_TOKENS)

    def both_mid_run() -> list[str] | None:
        queued = {o.job_id for o in race.load.outcomes if o.kind == "queued" and o.job_id}
        targets = sorted(set(jobs_in(stack, race, "in_progress")) & queued)
        return targets if len(targets) >= 3 and len(jobs_in(stack, killed, "in_progress")) >= 3 else None

    targets = wait_until(both_mid_run, 120, "3 jobs of each load in progress (3 of them queued jobs)", interval=0.05)
    cancels = cancel_while_killing(race, targets, worker, stack)
    orphans = begin(stack, "6 orphaned broker message", start=False, queued=0)
    submitted = [orphans.load.queue_once(i).job_id for i in range(6)]
    deleted = delete_messages(stack.client(), CHAT_MODEL, submitted[:4])
    stack.start_workers(2)  # the two workers the poison job's test needs next
    orphans.load.start()  # the rest of its mixed load: synchronous and streamed, now that workers run
    books = {run.fault: close(stack, run) for run in (killed, race)}
    books[orphans.fault] = close(stack, orphans, timeout=30)  # INFERQ_ORPHAN_SWEEP_SECONDS=5: well within
    batch_end = batch.finish()
    return {
        "books": books,
        "cancels": cancels,
        "deleted": deleted,
        "killed": killed.fault,
        "race": race.fault,
        "batch": (batch, batch_end),
    }


def test_a_sigkilled_worker_loses_no_job(worker_death):
    books = worker_death["books"][worker_death["killed"]]
    assert_every_job_ended_once(books)
    assert_failures_only(books, PARTIAL)
    assert any(int(r.get("attempts") or 0) > 1 for r in books.records.values()), "the dead worker's jobs should rerun"


def test_a_batch_running_on_the_sigkilled_worker_ends_each_line_once(worker_death):
    check_books(*worker_death["batch"])


def test_a_cancel_racing_the_workers_death_ends_cancelled_once(worker_death):
    books, cancels = worker_death["books"][worker_death["race"]], worker_death["cancels"]
    assert all(c.status in (200, 409) for c in cancels), f"a cancel should answer 200 or 409: {cancels}"
    won = {c.job_id for c in cancels if c.status == 200 and c.body["status"] == "cancelled"}
    assert won, "no cancel won the race (all jobs had already ended)"
    assert_every_job_ended_once(books)
    ended = {job_id: r["status"] for job_id, r in books.records.items()}
    assert {job_id: ended[job_id] for job_id in won} == dict.fromkeys(won, "cancelled")
    others = {job_id: status for job_id, status in ended.items() if job_id not in won and status != "completed"}
    assert set(others.values()) <= {"failed"}, f"jobs nobody cancelled: {others}"
    assert_failures_only(books, PARTIAL)


def test_a_queued_job_whose_broker_message_was_lost_is_sent_again(worker_death):
    books, deleted = worker_death["books"]["6 orphaned broker message"], worker_death["deleted"]
    assert len(deleted) == 4, f"the test meant to delete 4 waiting messages, found {len(deleted)}"
    assert_every_job_ended_once(books)
    assert {books.records[job_id]["status"] for job_id in deleted} == {"completed"}


# -- two workers: a poison job; one of two workers killed; a worker a minute behind ---------------------------


def test_a_poison_job_fails_after_max_attempts_and_the_others_complete(stack):
    """The poison runs alone first (its first death catches no other job), the load after: no job dies twice but it."""
    stack.ensure_workers(2)
    run = begin(stack, "5 poison job", start=False)
    poison = run.load.queue_once(0, chat_body(0, tokens=256, prompt="Tell a long story.")).job_id
    caught: dict[int, list[str]] = {}

    def note(attempt: int) -> None:
        caught[attempt] = jobs_in(stack, run, "in_progress")

    # After its last death it starts the two workers the next test needs.
    player = PoisonPlayer(stack, poison, restart=(2, 0), on_kill=note)
    player.start()
    wait_until(lambda: player.kills or player.errors, 120, "the poison's first attempt to kill its worker")
    run.load.start()  # on the surviving worker, where the poison's second attempt will kill it mid-run
    books = close(stack, run, timeout=RESTART_SECONDS)  # covers the restart
    player.stop.set()
    player.join(60)
    assert not player.errors, player.errors
    assert_every_job_ended_once(books)
    record = books.records[poison]
    assert (record["status"], error_codes(books).get(poison)) == ("failed", "job_failed_repeatedly"), (
        f"the poison job ended {record['status']} ({error_codes(books).get(poison)}) after {record.get('attempts')} "
        f"attempts, killed at attempts {player.kills}; expected failed/job_failed_repeatedly after {MAX_ATTEMPTS}; "
        f"the player: {player.trail}; the record: {record}"
    )
    assert int(record["attempts"]) == MAX_ATTEMPTS
    others = {k: v for k, v in error_codes(books).items() if k != poison}
    assert set(others.values()) <= {PARTIAL}, (
        f"jobs besides the poison failed: {others} (in progress at kills: {caught})"
    )


def test_one_of_two_workers_sigkilled_mid_run(stack):
    """The two workers the poison's last death left (a worker start saved)."""
    _survivor, victim = stack.ensure_workers(2)
    run = begin(stack, "8 one of two workers SIGKILL")
    wait_running(stack, run, 4)
    stack.kill_worker(victim)
    books = close(stack, run)
    assert_every_job_ended_once(books)
    assert_failures_only(books, PARTIAL)


def test_a_worker_a_minute_behind_stays_live_and_keeps_its_jobs(stack):
    """A normal worker runs the reconciler; the skewed one must not look dead to it, nor to the API.

    Last, and started only here: until the clocks agree, the skewed worker's
    jobs are re-queued over and over, which must not spill into other faults.
    """
    skew = measured_skew(clock_skew_vars(SKEW_SECONDS))
    assert skew < SKEW_SECONDS + 5, f"the clock skew did not take ({skew:+.0f} s)"
    _normal, skewed = stack.ensure_workers(1, skewed=1)
    run = begin(stack, "7 worker clock 60 s behind", tokens=LONG_TOKENS)
    wait_running(stack, run, 4)
    live = stack.api_live_workers()
    books = close(stack, run)
    ran_there = [job for job, r in books.records.items() if worker_pid(r.get("worker") or "") == skewed.process.pid]
    rerun = [job_id for job_id, r in books.records.items() if int(r.get("attempts") or 0) > 1]
    broken = [
        *(["the skewed worker ran none of the jobs"] if not ran_there else []),
        *([f"{len(rerun)} jobs re-queued though their worker was alive"] if rerun else []),
        *([f"the API counted {live} live workers while both beat"] if live != 2 else []),
        *books.problems(),
    ]
    assert not broken, f"{len(ran_there)} jobs went to the skewed worker; " + "; ".join(broken)
    assert_failures_only(books, PARTIAL)

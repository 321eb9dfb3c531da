"""The chaos level's one stack of real processes, shared by every fault of tests/chaos/test_faults.py.

A real redis-server (append-only, as config/redis.conf has it), a real
gunicorn API and real vLLM workers of the chat model, with leases short
enough that a dead worker's jobs come back within seconds. Worker starts are
the expensive part (~40 s each on two cores), so the faults share the stack
and a fault starts only the workers it needs (`ensure_workers`).

Each fault uses a fresh API key; its books (devstack.faults.audit) go into
LEDGER, which tests/chaos/conftest.py prints as one table at the end.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import redis
import requests

from app.auth.keys import KeyStore
from devstack.faults import Books, audit, clock_skew_vars, kill_group, open_jobs, worker_pid
from tasks.heartbeat import workers_key
from tasks.jobs import TERMINAL
from tasks.keyspace import KEYS
from tests.harness import CHAT_MODEL, ApiServer, RedisServer, ServiceEnv, WorkerProcess, wait_until, write_models_file

#: Short leases (a dead worker's jobs return within seconds), two attempts (fewer worker starts for the poison job),
#: a short orphan sweep (a job without a broker message is re-sent within seconds).
CHAOS_ENV = {
    "INFERQ_LEASE_TIMEOUT_SECONDS": "6",
    "INFERQ_RECONCILE_SECONDS": "1",
    "INFERQ_LEASE_RENEW_SECONDS": "1",
    "INFERQ_MAX_ATTEMPTS": "2",
    "INFERQ_ORPHAN_SWEEP_SECONDS": "5",
    "INFERQ_REDIS_MEMORY_HIGH_WATER": "0.9",
}
MAX_ATTEMPTS = int(CHAOS_ENV["INFERQ_MAX_ATTEMPTS"])
#: A skewed worker's wall clock is this far off (behind): a host whose NTP is broken.
SKEW_SECONDS = -60.0
#: The books of every fault run so far, printed by tests/chaos/conftest.py.
LEDGER: list[Books] = []


class ChaosStack:
    """Redis and the API start with the stack; workers only when a fault asks (`ensure_workers`)."""

    def __init__(self, directory: Path) -> None:
        self.redis = RedisServer(directory / "redis").start()
        files = str(directory / "files")  # uploads and batch outputs, shared by the API and the workers
        self.env = ServiceEnv(self.redis.url, write_models_file(directory), INFERQ_FILES_DIR=files, **CHAOS_ENV)
        self.api = ApiServer(self.env, log_name="chaos-api.log").start()
        self.workers: list[WorkerProcess] = []
        self.skewed: set[int] = set()  # pids of the workers started with a skewed clock
        self._client = self.redis.client()  # redis-py reconnects by itself after a Redis restart

    @property
    def url(self) -> str:
        return self.api.url

    def client(self) -> redis.Redis:
        return self._client

    def new_key(self, fault: str) -> tuple[str, str]:
        """A fresh key (and its id, the jobs' owner) per fault: its jobs and its usage are that fault's alone."""
        key, record = KeyStore(self.client()).create(name=f"chaos-{fault}", rpm=1_000_000)
        return key, record["id"]

    # -- workers -------------------------------------------------------------------------------
    def live_workers(self, skewed: bool | None = None) -> list[WorkerProcess]:
        """Running workers; only the skewed (or only the unskewed) ones when asked."""
        live = [w for w in self.workers if w.process and w.process.poll() is None]
        return live if skewed is None else [w for w in live if (w.process.pid in self.skewed) == skewed]

    def start_workers(self, normal: int = 1, skewed: int = 0) -> list[WorkerProcess]:
        """Start workers at once (their engines load in parallel) and wait until each beats.

        Skewed ones run with their wall clock SKEW_SECONDS behind (devstack.faults.clock_skew_vars).
        """
        started = [self._spawn(self.env) for _ in range(normal)]
        if skewed:
            env = ServiceEnv(self.redis.url, Path(self.env.vars["INFERQ_MODELS_FILE"]), **CHAOS_ENV)
            env.vars["INFERQ_FILES_DIR"] = self.env.vars["INFERQ_FILES_DIR"]
            env.vars.update(clock_skew_vars(SKEW_SECONDS))
            late = [self._spawn(env, "-skewed") for _ in range(skewed)]
            self.skewed |= {w.process.pid for w in late}
            started += late
        for worker in started:
            self.wait_beating(worker)
        return started

    def _spawn(self, env: ServiceEnv, suffix: str = "") -> WorkerProcess:
        log_name = f"chaos-worker-{len(self.workers) + 1}{suffix}.log"
        worker = WorkerProcess(env, log_name=log_name).start(wait=False)
        self.workers.append(worker)
        return worker

    def wait_beating(self, worker: WorkerProcess, timeout: float = 420) -> None:
        """Its engine is up: its heartbeat entry exists (at whatever time its own clock says)."""
        client = self.client()

        def beating() -> bool:
            names = [m.decode() for m in client.zrange(workers_key(CHAT_MODEL), 0, -1)]
            return any(worker_pid(name) == worker.process.pid for name in names)

        wait_until(beating, timeout, f"worker {worker.process.pid} (log: {worker.log_path})", process=worker.process)

    def ensure_workers(self, normal: int, skewed: int = 0) -> list[WorkerProcess]:
        """Exactly so many live workers of each kind (unskewed first in the list): stop extras, start the missing."""
        self.reap_departed()
        for kind, count in ((False, normal), (True, skewed)):
            for extra in self.live_workers(skewed=kind)[count:]:
                extra.stop()
        missing = (normal - len(self.live_workers(skewed=False)), skewed - len(self.live_workers(skewed=True)))
        if any(n > 0 for n in missing):
            self.start_workers(*(max(n, 0) for n in missing))
        return self.live_workers(skewed=False) + self.live_workers(skewed=True)

    def reap_departed(self, grace: float = 10.0) -> None:
        """Kill workers whose process still runs but that left the live set, as a supervisor would.

        A worker Celery gave up on (kombu#582 after a Redis restart) leaves the
        live set and then takes up to a minute to exit: it serves nothing, yet
        its process runs, and a fault counted on it would wait for jobs in vain.
        """
        client = self.client()

        def registered(worker: WorkerProcess) -> bool:
            try:
                names = [m.decode() for m in client.zrange(workers_key(CHAT_MODEL), 0, -1)]
            except redis.RedisError:  # Redis restarting: no sign of a departure
                return True
            return any(worker_pid(name) == worker.process.pid for name in names)

        for worker in self.live_workers():
            try:
                wait_until(lambda w=worker: registered(w), grace, f"worker {worker.process.pid} in the live set",
                           process=worker.process)  # fmt: skip
            except (TimeoutError, RuntimeError):
                worker.kill(signal.SIGKILL)

    def kill_worker(self, worker: WorkerProcess) -> None:
        worker.kill(signal.SIGKILL)

    def holder(self, job_id: str, record: dict[str, str]) -> WorkerProcess | None:
        """The worker running a job: its record's `worker` field, else the only live worker, else Celery's answer."""
        live = self.live_workers()
        pid = worker_pid(record.get("worker", ""))
        if pid is None and len(live) == 1:
            return live[0]
        if pid is None:
            pid = self._celery_holder(job_id)
        return next((w for w in live if w.process.pid == pid), None)

    def _celery_holder(self, job_id: str) -> int | None:
        """Ask the workers (Celery's `inspect active`; the task id is the job id) which one runs the job."""
        from tasks.celery_app import create_celery
        from tasks.settings import Settings

        celery = create_celery(Settings.load(redis_url=self.redis.url))
        active = celery.control.inspect(timeout=1.0).active() or {}
        return next((worker_pid(name) for name, tasks in active.items() if any(t["id"] == job_id for t in tasks)), None)

    def api_live_workers(self) -> int:
        """Live workers of the chat model, as the API reports them (GET /health/ready)."""
        body = requests.get(self.url + "/health/ready", timeout=10).json()
        return int(body["models"][CHAT_MODEL]["live_workers"] or 0)

    # -- the other services ----------------------------------------------------------------------
    def kill_api(self) -> None:
        """SIGKILL gunicorn's master and its workers at once: no graceful anything."""
        kill_group(self.api.process)

    def restart_api(self) -> None:
        self.api.start()  # same port: clients reconnect to where they were

    # -- waiting and books ---------------------------------------------------------------------------
    def settle(self, owner: str, told: set[str], timeout: float) -> bool:
        """Wait until every job the key accepted has ended; False at the deadline (the books then say which)."""
        try:
            wait_until(lambda: not open_jobs(self.client(), owner, told), timeout, "accepted jobs to end", interval=0.5)
        except TimeoutError:
            return False
        return True

    def books(self, fault: str, owner: str, told: set[str], since: float) -> Books:
        """Audit the key, stamp the fault's time, and put the result in the ledger."""
        books = audit(self.client(), fault, owner, told)
        books.seconds = time.monotonic() - since
        LEDGER.append(books)
        return books

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        kill_group(self.api.process, signal.SIGTERM, grace=5)
        self.redis.stop()


class PoisonPlayer(threading.Thread):
    """Plays a job that kills its worker: whenever the job starts an attempt, SIGKILL the worker holding it.

    At most `MAX_ATTEMPTS` kills (the service promises no more attempts than
    that; a further attempt is recorded in `attempts_seen` and left to run).
    After a kill that leaves no worker it starts `restart` (normal, skewed)
    of them, as a supervisor would. `on_kill` runs just after each kill (to note what else
    the kill caught: the dead worker's jobs stay in progress until their leases
    expire, while a slow look before the kill could let the poison finish first).
    It stops when the job ends or `stop` is set.
    """

    def __init__(self, stack: ChaosStack, job_id: str, restart: tuple[int, int] = (1, 0), on_kill=None) -> None:
        super().__init__(name="poison-player", daemon=True)
        self.stack, self.job_id, self.restart, self.on_kill = stack, job_id, restart, on_kill
        self.kills: list[int] = []  # the attempts it killed
        self.attempts_seen: set[int] = set()
        self.errors: list[str] = []
        self.trail: list[str] = []  # what it saw and did, for a failing test's message
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self._play()
        except Exception as exc:  # noqa: BLE001 - the test reads it from `errors`
            self.errors.append(repr(exc))

    def _play(self) -> None:
        client = self.stack.client()
        while not self.stop.wait(0.05):  # polls the record: a claim is visible there at once
            record = {k.decode(): v.decode() for k, v in client.hgetall(KEYS.job(self.job_id)).items()}
            if record.get("status") in TERMINAL:
                return
            attempt = int(record.get("attempts") or 0)
            if record.get("status") != "in_progress" or attempt in self.attempts_seen:
                continue
            self.attempts_seen.add(attempt)
            if len(self.kills) < MAX_ATTEMPTS:
                self._kill(record, attempt)

    def _kill(self, record: dict[str, str], attempt: int) -> None:
        worker = self.stack.holder(self.job_id, record)
        if worker is None:
            self.errors.append(f"attempt {attempt}: cannot tell which live worker holds the job")
            return
        self.stack.kill_worker(worker)
        self.kills.append(attempt)
        self.trail.append(
            f"attempt {attempt} on {record.get('worker')!r} (started {record.get('started_at')}): "
            f"killed pid {worker.process.pid} at {time.time():.2f}"
        )
        if self.on_kill is not None:
            self.on_kill(attempt)
        if not self.stack.live_workers():
            self.stack.start_workers(*self.restart)

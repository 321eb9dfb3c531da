"""A Celery worker pinned to one model, and the chores that run beside its tasks.

One process holds one vLLM engine and runs up to `max_concurrency` jobs at
once on it through Celery's threads pool (a prefork pool cannot host vLLM:
its daemonic children may not start the engine core's own process). The
engine starts on `worker_init`, before the consumer reserves anything, and the
heartbeat only begins once it is ready. `inferq worker` (app.cli) starts it;
that command's module carries the `__main__` guard vLLM's engine core needs.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from tasks import runner
from tasks.background import BackgroundLoop
from tasks.batches.runner import BatchRunner
from tasks.cancellation import CancelListener
from tasks.celery_app import create_celery
from tasks.consumer_watch import ConsumerWatch
from tasks.dispatch import CeleryBroker, message_ids, waiting_messages
from tasks.drain import Drain
from tasks.files import FileService
from tasks.heartbeat import INTERVAL as HEARTBEAT_SECONDS
from tasks.heartbeat import Heartbeat
from tasks.jobs import JobService, Policy
from tasks.models import ModelSpec
from tasks.reconciler import LeaseKeeper, Reconciler
from tasks.redis_client import redis_client
from tasks.settings import Settings
from tasks.storage import LocalStorage
from workers import runtime

log = logging.getLogger("inferq.worker")

#: How often the watchdog checks for an engine core that died between requests.
WATCHDOG_SECONDS = 2.0
#: How often the consumer watch looks for messages nobody takes.
CONSUMER_WATCH_SECONDS = 5.0


def default_name(spec: ModelSpec) -> str:
    """`<model>@<host>-<pid>`: Flower groups by model, and tests find a worker by its pid."""
    return f"{spec.id}@{socket.gethostname()}-{os.getpid()}"


class Chores:
    """Everything a worker does besides running tasks, tied to Celery's worker signals.

    The engine starts on `worker_init`, before anything is reserved; a lease
    is held from the moment a message is received; the loops start on
    `worker_ready`, the heartbeat last, once everything else runs. Shutdown
    stops them in reverse: the heartbeat first, so the API stops counting on
    this worker at once; the watchdog next, so an engine core that dies with
    the worker (a SIGTERM to the process group) is not rebuilt on the way
    out; the engine last. Before that, SIGTERM drains (tasks.drain): the
    worker leaves the live set, gives back what it has not started, finishes
    what runs within INFERQ_DRAIN_SECONDS and hands back the rest.
    """

    def __init__(self, config: Settings, spec: ModelSpec, name: str, celery: Celery) -> None:
        self.config, self.spec, self.name, self.celery = config, spec, name, celery
        self.store = JobService(
            redis_client(config.redis_url), Policy.from_settings(config), broker=CeleryBroker(celery)
        )
        self.keeper = LeaseKeeper(self.store)
        self.consumer = ConsumerWatch(
            lambda: waiting_messages(self.store.redis, spec.id),
            idle=lambda: not self.keeper.held,
            on_stall=lambda: os.kill(os.getpid(), signal.SIGTERM),  # Celery's warm shutdown
        )
        self.loops: list[BackgroundLoop] = []
        self.drain: Drain | None = None

    def connect(self) -> None:
        signals.worker_init.connect(self.start_engine, weak=False)
        signals.task_received.connect(self.hold, weak=False)
        signals.worker_ready.connect(self.start_background, weak=False)
        signals.worker_shutting_down.connect(self.begin_drain, weak=False)
        signals.worker_shutdown.connect(self.stop, weak=False)

    def start_engine(self, **_: object) -> None:
        try:
            device = self.config.device if self.config.device != "auto" else runtime.detect_device()
            runtime.start(self.spec.id, self.spec.engine_options(device))
        except Exception as exc:
            # Celery logs and ignores a failing signal handler; a worker without
            # an engine would then consume jobs only to fail them. Exit instead,
            # before anything is reserved, and let the supervisor restart it.
            log.exception("the engine for %s did not start", self.spec.id)
            raise SystemExit(f"inferq worker: the engine for {self.spec.id} did not start: {exc}") from exc

    def hold(self, request: Any = None, **_: object) -> None:
        """From the moment a message is reserved, this worker answers for it."""
        self.consumer.received()
        self.keeper.hold(request.id)

    def start_background(self, **_: object) -> None:
        config, engine = self.config, runtime.current()
        listener = CancelListener(self.store, lambda job_id, count: engine.abort(engine.request_ids(job_id, count)))
        reconciler = Reconciler(
            self.store,
            config.lease_timeout_seconds,
            config.reconcile_seconds,
            models=list(config.models),
            broker_ids=lambda model: message_ids(self.store.redis, model),
            orphan_after=config.orphan_sweep_seconds,
        )
        beat = Heartbeat(
            redis_client(config.redis_url),
            self.spec.id,
            self.name,
            lambda: {"requests": engine.load(), "healthy": engine.healthy, "restarts": engine.restarts},
        )
        self.drain = Drain(
            self.store,
            config.drain_seconds,
            held=self.keeper.holding,
            abort=listener.abort_running,
            on_begin=self.stop_taking_jobs,
        )
        runner.set_context(
            runner.WorkerContext(
                self.store, self.spec.id, listener, self.keeper, self.name, self.spec.time_limit_seconds, self.drain
            )
        )
        self._loop("inferq-leases", self.keeper.renew, config.lease_renew_seconds, wait_first=True)
        self._loop("inferq-reconciler", reconciler.run_once, config.reconcile_seconds, wait_first=True)
        files = FileService(self.store.redis, LocalStorage(config.files_dir))
        batches = BatchRunner(self.store, files, config.batch_window)
        self._loop("inferq-batches", batches.run_once, config.batch_seconds, wait_first=True)
        self._loop("inferq-cancel", listener.poll, 0.0, retry_after=1.0, on_stop=listener.close)
        self._loop("inferq-engine-watchdog", runtime.restart_if_dead, WATCHDOG_SECONDS, wait_first=True)
        self._loop("inferq-consumer-watch", self.consumer.check, CONSUMER_WATCH_SECONDS, wait_first=True)
        self._loop("inferq-heartbeat", beat.beat, HEARTBEAT_SECONDS, on_stop=beat.leave)

    def begin_drain(self, how: str = "Warm", **_: object) -> None:
        """SIGTERM (Celery's warm shutdown): finish within INFERQ_DRAIN_SECONDS, give back the rest (tasks.drain)."""
        if self.drain is not None and how == "Warm":
            self.drain.begin()

    def stop_taking_jobs(self) -> None:
        """Leave the live set first, so the API stops counting on this worker; the consumer watch goes too."""
        for loop in self.loops:
            if loop.name in ("inferq-heartbeat", "inferq-consumer-watch"):
                loop.stop()

    def stop(self, **_: object) -> None:
        if self.drain is not None:
            self.drain.join(timeout=self.config.drain_seconds + 10)
        for loop in reversed(self.loops):
            loop.stop()
        runtime.stop()

    def _loop(self, name: str, step: Callable[[], object], interval: float, **options: Any) -> None:
        self.loops.append(BackgroundLoop(name, step, interval, **options).start())


#: Celery's loggers that write a line for every task received and every task succeeded.
PER_TASK_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def quiet_per_task_lines(loglevel: str) -> None:
    """Celery's per-task INFO lines only at DEBUG: they cost 6% of a busy worker's Python time.

    Flower and the metrics count tasks; tasks.runner logs a job's failures,
    retries and hand-backs itself.
    """
    if logging.getLevelName(loglevel.upper()) != logging.DEBUG:
        for name in PER_TASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)


def run(
    config: Settings, spec: ModelSpec, *, name: str | None = None, concurrency: int | None = None, loglevel: str
) -> None:
    """Serve `spec`'s queue until Celery is told to stop (SIGTERM: warm shutdown)."""
    logging.basicConfig(level=loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_per_task_lines(loglevel)
    name = name or default_name(spec)
    celery = create_celery(config)
    Chores(config, spec, name, celery).connect()
    celery.worker_main(
        [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency or spec.max_concurrency),
            "--queues",
            spec.queue,
            "--hostname",
            name,
            "--loglevel",
            loglevel,
            "--without-gossip",
            "--without-mingle",
        ]
    )

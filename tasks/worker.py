"""Start a Celery worker pinned to one model.

One process holds one vLLM engine and runs up to `max_concurrency` jobs at
once on it through Celery's threads pool (a prefork pool cannot host vLLM:
its daemonic children may not start the engine core's own process). The
engine starts on `worker_init`, before the consumer reserves anything, and the
heartbeat only begins once it is ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from typing import Any

from celery import signals

from tasks import runner
from tasks.cancellation import CancelListener
from tasks.celery_app import create_celery
from tasks.dispatch import dispatch
from tasks.heartbeat import Heartbeat
from tasks.jobs import JobService
from tasks.reconciler import LeaseKeeper, Reconciler
from tasks.redis_client import redis_client
from tasks.settings import Settings

log = logging.getLogger("inferq.worker")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a worker for one model.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", help="worker node name (default: <model>@<host>-<pid>)")
    parser.add_argument("--concurrency", type=int, help="jobs run at once (default: the model's max_concurrency)")
    parser.add_argument("--loglevel")
    args = parser.parse_args(argv)

    config = Settings.load()
    specs = config.models
    if args.model not in specs:
        parser.error(f"unknown model {args.model!r}; configured: {', '.join(specs)}")
    spec = specs[args.model]
    concurrency = args.concurrency or spec.max_concurrency
    name = args.name or f"{spec.id}@{socket.gethostname()}-{os.getpid()}"
    args.loglevel = (args.loglevel or config.log_level).upper()
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    celery = create_celery(config)
    state: dict[str, Any] = {}

    @signals.worker_init.connect(weak=False)
    def _start_engine(**_: object) -> None:
        from workers import runtime

        try:
            runtime.start(spec.id, spec.engine_options())
        except Exception as exc:
            # Celery logs and ignores a failing signal handler; a worker without
            # an engine would then consume jobs only to fail them. Exit instead,
            # before anything is reserved, and let the supervisor restart it.
            log.exception("the engine for %s did not start", spec.id)
            raise SystemExit(f"inferq worker: the engine for {spec.id} did not start: {exc}") from exc

    store = JobService(
        redis_client(config.redis_url), config.job_retention_seconds, send=lambda job: dispatch(celery, job)
    )
    keeper = LeaseKeeper(store, interval=config.lease_renew_seconds)

    @signals.task_received.connect(weak=False)
    def _hold(request: object = None, **_: object) -> None:
        # From the moment a message is reserved, this worker answers for it.
        keeper.hold(request.id)

    @signals.worker_ready.connect(weak=False)
    def _start_background(**_: object) -> None:
        from workers import runtime

        engine = runtime.current()
        beat = Heartbeat(
            redis_client(config.redis_url),
            spec.id,
            name,
            lambda: {"requests": engine.load(), "healthy": engine.healthy, "restarts": engine.restarts},
        )
        listener = CancelListener(store, lambda job_id, count: engine.abort(engine.request_ids(job_id, count)))
        reconciler = Reconciler(store, config.lease_timeout_seconds, config.reconcile_seconds)
        runner.set_context(runner.WorkerContext(store, spec.id, listener, keeper))
        for part in (beat, listener, keeper, reconciler):
            part.start()
        state.update(heartbeat=beat, listener=listener, reconciler=reconciler)

    @signals.worker_shutdown.connect(weak=False)
    def _stop(**_: object) -> None:
        from workers import runtime

        keeper.stop()
        for part in state.values():
            part.stop()
        runtime.stop()

    celery.worker_main(
        [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--queues",
            spec.queue,
            "--hostname",
            name,
            "--loglevel",
            args.loglevel,
            "--without-gossip",
            "--without-mingle",
            "--task-events",
        ]
    )
    return 0


if __name__ == "__main__":  # vLLM's engine core process needs this guard
    sys.exit(main())

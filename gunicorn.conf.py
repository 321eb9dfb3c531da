"""gunicorn settings for the API (read automatically from the working directory).

gevent workers: a synchronous completion blocks for the whole generation and
a stream stays open for minutes. With gevent each of those is a greenlet
parked on a Redis socket, so one process holds thousands of them; a threaded
worker would need a thread per waiting client.
"""

import os
import shutil
import tempfile
from pathlib import Path

from tasks.settings import Settings

_settings = Settings.load()
bind = _settings.bind
worker_class = "gevent"
workers = _settings.api_workers
worker_connections = _settings.api_connections
timeout = 0  # gevent workers heartbeat on their own; long generations are normal
# SIGTERM (a rolling update, a scale-down): stop accepting, let open responses
# (synchronous waits, streams) finish this long, then close them. A closed
# synchronous caller's job still ends once; its client retries or polls.
graceful_timeout = _settings.api_graceful_seconds
keepalive = 30
accesslog = None  # off by default: nothing logs prompts or keys
errorlog = "-"
loglevel = _settings.log_level.lower()

# Prometheus (app.metrics): each gunicorn worker counts its own requests in
# files under PROMETHEUS_MULTIPROC_DIR, and a scrape of any worker sums them
# all. The directory must start empty, so unless the operator names one, each
# server gets a fresh one (removed on exit). Set here, before any worker
# imports prometheus_client, which picks its mode at import time.
_PROMETHEUS_OWN_DIR = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _PROMETHEUS_OWN_DIR:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="inferq-prometheus-")


def on_starting(server):
    """Start from zero: files left by an earlier server would be summed in."""
    for stale in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    """A dead worker's live gauges must not be reported any more."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _PROMETHEUS_OWN_DIR:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)

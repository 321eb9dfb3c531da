"""The only place a Celery app is built.

The settings here are what keeps accepted jobs alive through worker crashes
and Redis restarts (see the design brief): late acks, requeue on a lost
worker, one reserved message per free slot, and JSON only (pickle would hand
code execution to whoever reaches Redis).

Kombu's ack emulation is off. With it, every message received and every ack
is a MULTI transaction on Redis (the `unacked` hash and its index), fsynced,
on the path between a submit and its claim: a round trip each way per job and
a fifth of the worker's own CPU. Nothing relies on it: a worker takes a lease
on every job the moment its message arrives, a dead worker's leases lapse and
the reconciler re-queues and re-sends its jobs (tasks.reconciler), and a job
queued with no message anywhere (one popped by a worker that died before its
lease) is re-sent by the orphan sweep. Kombu's own redelivery of `unacked`
came after a visibility timeout of hours, later than both. A worker that
stops gracefully still puts back what it reserved (kombu restores its
delivered messages when the channel closes).

A `rediss://` URL gets `broker_use_ssl` from the same URL, a `sentinel://` URL
kombu's Sentinel broker URL and `master_name` (tasks.redis_client):
kombu alone would skip the certificate check, and Flower reads TLS from there
only. The settings object is not put in the Celery config: `celery inspect
conf` and Flower's worker page print that config, and the settings hold the
Redis password, Flower's credentials and the metrics token.
"""

from __future__ import annotations

from celery import Celery

from tasks.jobs import DEFAULT_PRIORITY
from tasks.redis_client import celery_broker, tls_options
from tasks.settings import Settings

#: Kombu's Redis transport emulates priorities with one list per step, named `<queue><sep><step>`.
PRIORITY_STEPS = list(range(10))
QUEUE_SEPARATOR = ":"


def create_celery(settings: Settings | None = None) -> Celery:
    """The Celery app of the API, the workers and Flower, on `settings.redis_url` (`redis://`, `rediss://`, `sentinel://`)."""
    settings = settings or Settings.load()
    broker, sentinel_options = celery_broker(settings.redis_url)
    app = Celery("inferq", broker=broker, include=["tasks.inference", "tasks.embeddings"])
    transport = {
        "ack_emulation": False,
        "priority_steps": PRIORITY_STEPS,
        "sep": QUEUE_SEPARATOR,
        "queue_order_strategy": "priority",
        **sentinel_options,
    }
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        event_serializer="json",
        task_ignore_result=True,  # the job record in Redis is the source of truth
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        broker_transport_options=transport,
        task_default_priority=DEFAULT_PRIORITY,
        task_queue_max_priority=PRIORITY_STEPS[-1],
        # Task events (three Redis publishes per task, a fifth of a worker's own CPU
        # per job) are sent only while something watches: `inferq flower` turns
        # them on at its start and Flower renews that every 5 s. Worker events
        # (heartbeats, online/offline) always flow, so Flower lists every worker.
        worker_send_task_events=False,
        # A "task-sent" event would cost the API a second Redis publish per job
        # (a third of the submit path), for a state Flower can show anyway.
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    tls = tls_options(settings.redis_url)
    if tls is not None:
        app.conf.broker_use_ssl = tls
    return app

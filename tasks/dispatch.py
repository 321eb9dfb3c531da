"""The broker side of a job: send its message, and see which messages are still waiting.

Only the job id travels. The worker runs the request stored in the job record
(returned by its claim), so whoever can publish to the broker still cannot
change what a queued job asks for. The reconciler's orphan sweep compares
the job store with `message_ids` and re-sends what the broker lost.
"""

from __future__ import annotations

import base64
import json
import uuid

import redis
from celery import Celery
from kombu.serialization import dumps
from redis.commands.core import Script

from tasks.celery_app import PRIORITY_STEPS, QUEUE_SEPARATOR
from tasks.jobs.broker import BrokerMessage
from tasks.jobs.record import Job

GENERATE_TASK = "inferq.generate"
EMBED_TASK = "inferq.embed"
TASK_FOR_KIND = {"generate": GENERATE_TASK, "embed": EMBED_TASK}
#: Messages read per step of the sweep: each step is short, so Redis never stalls on a long queue.
SCAN_CHUNK = 1000

# KEYS: one broker list. ARGV: start, stop. The task ids (= job ids) of that slice, parsed in Redis
# so only ids cross the wire. Kombu writes the message's headers as JSON: `"id": "<task id>"`.
_IDS = Script(
    None,
    b"""
local ids = {}
for _, message in ipairs(redis.call('LRANGE', KEYS[1], ARGV[1], ARGV[2])) do
  local id = string.match(message, '"id":%s*"([^"]+)"')
  if id then ids[#ids + 1] = id end
end
return ids
""",
)


def queue_name(model: str) -> str:
    return f"model.{model}"


def dispatch(celery: Celery, job: Job) -> None:
    """The task id is the job id, so Flower shows jobs by their id; never the prompt."""
    celery.send_task(
        TASK_FOR_KIND[job.request.kind],
        args=[job.id],
        queue=queue_name(job.model),
        task_id=job.id,
        priority=job.priority,
        kwargsrepr=_kwargsrepr(job),
    )


class CeleryBroker:
    """tasks.jobs.broker.Broker on Celery: `send` publishes through kombu, `message` builds what it would push.

    `message` is for the submit step, which pushes it in the same Lua call that
    writes the record. Celery builds the task message (`as_task_v2`, the
    headers and body `send_task` sends); the envelope around it is kombu's
    Redis transport's format: a base64 body, a fresh delivery tag, the anonymous
    exchange with the queue as routing key (what `send_task(queue=...)`
    publishes), and one list per priority step. `tests/integration/test_dispatch.py`
    holds it equal to what `send_task` pushes, so a kombu upgrade that changes the
    format fails there, not in production.
    """

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send(self, job: Job) -> None:
        dispatch(self.celery, job)

    def message(self, job: Job) -> BrokerMessage:
        queue = queue_name(job.model)
        task = self.celery.amqp.as_task_v2(
            job.id, TASK_FOR_KIND[job.request.kind], args=[job.id], kwargsrepr=_kwargsrepr(job), ignore_result=None
        )
        content_type, encoding, body = dumps(task.body, serializer="json")
        properties = {
            **task.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": job.priority,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        }
        envelope = {
            "body": base64.b64encode(body.encode() if isinstance(body, str) else body).decode(),
            "content-encoding": encoding,
            "content-type": content_type,
            "headers": task.headers,
            "properties": properties,
        }
        return BrokerMessage(broker_list(job.model, job.priority), json.dumps(envelope))


def _kwargsrepr(job: Job) -> str:
    return repr({"model": job.model, "endpoint": job.endpoint})


def broker_list(model: str, priority: int) -> str:
    """The list kombu's Redis transport pushes a message of this priority to (priorities clamp to the steps)."""
    step = min(max(priority, PRIORITY_STEPS[0]), PRIORITY_STEPS[-1])
    return queue_name(model) if step == 0 else f"{queue_name(model)}{QUEUE_SEPARATOR}{step}"


def broker_lists(model: str) -> list[str]:
    """Kombu's Redis transport keeps one list per priority step: `<queue>` for 0, `<queue><sep><p>` above."""
    return [broker_list(model, step) for step in PRIORITY_STEPS]


def waiting_messages(client: redis.Redis, model: str) -> int:
    """Messages waiting in this model's queue, over every priority list."""
    with client.pipeline(transaction=False) as pipe:
        for key in broker_lists(model):
            pipe.llen(key)
        return sum(pipe.execute())


def message_ids(client: redis.Redis, model: str) -> set[str]:
    """The job ids whose messages wait in this model's queue (not those a worker has reserved)."""
    ids: set[str] = set()
    for key in broker_lists(model):
        start = 0
        while True:
            chunk = _IDS(keys=[key], args=[start, start + SCAN_CHUNK - 1], client=client)
            ids.update(raw.decode() for raw in chunk)
            if client.llen(key) <= start + SCAN_CHUNK:
                break
            start += SCAN_CHUNK
    return ids

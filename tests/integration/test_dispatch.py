"""The message the submit step pushes is the one Celery's send_task would push (real Redis, real kombu).

`CeleryBroker.message` builds kombu's Redis-transport envelope itself, so
the submit script can push it with the job's record in one step. If a Celery
or kombu upgrade changes that format, these tests fail here rather than
workers failing to read jobs in production.
"""

from __future__ import annotations

import json
import time

import pytest

from tasks.celery_app import create_celery
from tasks.dispatch import CeleryBroker, broker_lists, dispatch, message_ids, queue_name
from tasks.jobs import Job
from tasks.protocol.requests import EmbeddingRequest, GenerationRequest
from workers.sampling import Sampling

#: Differ per publish (delivery tag, the publishing thread's reply queue) or per publisher
#: (send_task puts its keyword options in the properties too); no consumer reads them.
PER_PUBLISH = {"delivery_tag", "reply_to", "kwargsrepr"}


@pytest.fixture
def broker(base_config):
    return CeleryBroker(create_celery(base_config))


def job(model: str, priority: int, kind: str = "generate") -> Job:
    if kind == "embed":
        request = EmbeddingRequest(model, 1, [[1, 2]])
    else:
        request = GenerationRequest("chat", model, 1, [[1, 2, 3]], Sampling(max_tokens=4))
    built = Job(f"job_{time.time_ns()}", "owner", model, "queued", request, priority)
    built.endpoint = request.endpoint
    return built


def comparable(raw: bytes | str) -> dict:
    envelope = json.loads(raw)
    envelope["properties"] = {k: v for k, v in envelope["properties"].items() if k not in PER_PUBLISH}
    envelope["headers"].pop("origin")  # host and pid of the publisher
    return envelope


@pytest.mark.parametrize(("priority", "kind"), [(0, "generate"), (5, "generate"), (9, "embed")])
def test_the_built_message_is_what_send_task_pushes(broker, redis_server, priority, kind):
    model = f"dispatch{time.time_ns()}"
    queued = job(model, priority, kind)
    dispatch(broker.celery, queued)
    client = redis_server.client()
    pushed = [(key, raw) for key in broker_lists(model) for raw in client.lrange(key, 0, -1)]
    assert len(pushed) == 1
    built = broker.message(queued)
    assert built.list_key == pushed[0][0], "the list of the message's priority step"
    assert comparable(built.payload) == comparable(pushed[0][1])
    for key in broker_lists(model):
        client.delete(key)


def test_a_pushed_message_is_read_back_by_kombu_and_the_orphan_sweep(broker, redis_server):
    model = f"dispatch{time.time_ns()}"
    queued = job(model, 3)
    built = broker.message(queued)
    client = redis_server.client()
    client.lpush(built.list_key, built.payload)
    assert message_ids(client, model) == {queued.id}
    with broker.celery.connection_for_read() as connection:
        message = connection.default_channel.basic_get(queue_name(model), no_ack=True)
    assert message is not None and message.headers["id"] == queued.id and message.headers["task"] == "inferq.generate"
    assert message.decode()[0] == [queued.id], "the task's only argument is the job id"
    assert message.delivery_info["routing_key"] == queue_name(model)

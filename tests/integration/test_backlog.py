"""The backlog an autoscaler reads, checked against the true count on a real Redis and kombu transport.

No model runs here: the jobs are taken off the broker the way a worker's
consumer takes them (kombu's Redis channel, configured as the worker's: the
message leaves Redis for the consumer's memory), held as the worker holds
them on `task_received`, and
started as its task starts them (the job service's claim). The counts are
known by construction and each is checked against Redis's own state too.
"""

from __future__ import annotations

import pytest

from app.metrics import scrape_values
from tasks.backlog import Backlog, backlog
from tasks.dispatch import broker_lists, queue_name
from tasks.protocol.requests import GenerationRequest
from tasks.reconciler import LeaseKeeper
from tests.harness import GHOST_MODEL
from workers.sampling import Sampling

MODEL = GHOST_MODEL  # configured, and no worker ever consumes its queue
#: priority -> jobs submitted at it: three of kombu's priority lists hold messages.
SUBMITTED = {0: 2, 3: 3, 9: 1}


@pytest.fixture(scope="module")
def stack(private_stack):
    return private_stack("backlog")


def take(channel, count: int) -> list[str]:
    """Reserve `count` messages as a worker's consumer does (highest priority first); their job ids.

    They stay reserved while `channel` is open: closing it gives them back, as a stopping worker does.
    """
    taken = []
    for _ in range(count):
        message = channel.basic_get(queue_name(MODEL), no_ack=False)
        assert message is not None
        taken.append(message.headers["id"])
    return taken


def scraped(client) -> dict:
    response = client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200
    values = scrape_values(response.get_data(as_text=True))
    return {
        state: values[f"inferq_backlog{{model={MODEL},state={state}}}"] for state in ("waiting", "reserved", "running")
    }


def test_backlog_counts_every_priority_list_reserved_and_running(stack):
    store, celery = stack.app.extensions["inferq.jobs"], stack.app.extensions["celery"]
    request = GenerationRequest("chat", MODEL, 1, [[1, 2, 3]], Sampling(max_tokens=4))
    for priority, count in SUBMITTED.items():
        for _ in range(count):
            store.submit(owner="backlog-tests", request=request, priority=priority)
    redis = store.redis
    assert sum(1 for key in broker_lists(MODEL) if redis.llen(key)) == len(SUBMITTED), "several priority lists"
    assert backlog(store, MODEL) == Backlog(MODEL, waiting=6, reserved=0, running=0)

    keeper = LeaseKeeper(store)
    with celery.connection_for_read() as connection:
        held = take(connection.default_channel, 3)
        for job_id in held:
            keeper.hold(job_id)  # what the worker does on task_received
        claim = store.claim(held[0], MODEL, "backlog-tests@host-1")  # what its task does when it starts
        assert claim is not None
        keeper.started(held[0])
        assert backlog(store, MODEL) == Backlog(MODEL, waiting=3, reserved=0, running=1), "holds not written yet"
        keeper.renew()  # the worker's next round of lease renewals writes them
        assert sum(redis.llen(key) for key in broker_lists(MODEL)) == 3, "three reserved ones left every list"
        assert not redis.exists("unacked"), "no ack emulation: a reserved message is in the consumer's memory"
        check_reported(stack.app, Backlog(MODEL, waiting=3, reserved=2, running=1))

        assert store.finish(claim, "completed", result={}, usage={"prompt_tokens": 3, "completion_tokens": 1})
        keeper.release(held[0])
        assert backlog(store, MODEL) == Backlog(MODEL, waiting=3, reserved=2, running=0)
    # The channel closed unacked, as a worker's at a graceful stop: kombu put every message it held back.
    assert sum(redis.llen(key) for key in broker_lists(MODEL)) == 6


def check_reported(app, expected: Backlog) -> None:
    """The same numbers from the module, the Prometheus gauge and both JSON routes."""
    assert backlog(app.extensions["inferq.jobs"], MODEL) == expected
    client = app.test_client()
    assert scraped(client) == {"waiting": expected.waiting, "reserved": expected.reserved, "running": expected.running}
    one = client.get(f"/metrics/backlog/{MODEL}", headers={"Authorization": ""})
    assert one.status_code == 200 and one.get_json() == {**expected.to_json(), "total": expected.total}
    every = client.get("/metrics/backlog", headers={"Authorization": ""}).get_json()["models"]
    assert every[MODEL]["total"] == expected.total and set(every) == set(app.extensions["inferq.settings"].models)


def test_backlog_is_for_operators_only(stack):
    client = stack.app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    for path in ("/metrics/backlog", f"/metrics/backlog/{MODEL}"):
        denied = client.get(path, environ_base=remote, headers={"Authorization": ""})
        assert denied.status_code == 403 and denied.get_json()["error"]["code"] == "forbidden"
    missing = client.get("/metrics/backlog/no-such-model", headers={"Authorization": ""})
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "model_not_found"

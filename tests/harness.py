"""What the tests use from the process harness, under the name every test module imports.

The harness itself (real redis-server, worker and gunicorn processes) lives in
`devstack/processes.py`, shared with the benchmarks; this module re-exports it, so
test modules keep one import line (`from tests.harness import CHAT_MODEL, …`)
and nothing is defined twice. `RecordingBroker` is the tests' own.
"""

import redis

from devstack.processes import *  # noqa: F403 - the whole public surface, see its __all__
from tasks.jobs.broker import BrokerMessage
from tasks.jobs.record import Job


class RecordingBroker:
    """A broker (tasks.jobs.broker.Broker) whose messages are bare job ids on a list of the test's own.

    What `sent` reads back is what reached Redis: a submission the script
    refused, or one that found its job already written, pushes nothing.
    """

    def __init__(self, client: redis.Redis, key: str) -> None:
        self.client, self.key = client, key

    def message(self, job: Job) -> BrokerMessage:
        return BrokerMessage(self.key, job.id)

    def send(self, job: Job) -> None:
        self.client.lpush(self.key, job.id)

    @property
    def sent(self) -> list[str]:
        """Job ids in the order their messages were pushed."""
        return [raw.decode() for raw in reversed(self.client.lrange(self.key, 0, -1))]

"""The job service: every job state change and every job key, in one class.

The API submits, reads, cancels and waits (tasks.jobs.submission); the worker
claims, streams and finishes (tasks.jobs.attempts); the reconciler re-queues,
expires and re-sends (tasks.jobs.recovery); everyone reads (tasks.jobs.reads).
Nothing else touches a job's keys. A job is a hash (tasks.jobs.record) plus a
stream of events the worker appends to: `delta` events while it generates
(only when someone streams) and one terminal `end` event, on which waiters
block. Each state change is one Lua step (tasks.jobs.scripts,
tasks.jobs.attempt_scripts), judged by Redis's clock.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from redis.commands.core import Script

from tasks.jobs import attempt_scripts, scripts
from tasks.jobs.attempts import Attempts
from tasks.jobs.broker import Broker
from tasks.jobs.delta_writer import DeltaWriter
from tasks.jobs.policy import Policy
from tasks.jobs.reads import JobReads
from tasks.jobs.recovery import Recovery
from tasks.jobs.submission import Submission
from tasks.keyspace import KEYS, Keyspace

log = logging.getLogger(__name__)

#: How long a replicated write waits for its replicas before it is answered anyway.
REPLICA_WAIT_MS = 100


class JobService(Submission, Attempts, Recovery, JobReads):
    """`broker` takes jobs' messages (tasks.dispatch.CeleryBroker); the API, the workers and the reconciler pass one."""

    def __init__(
        self,
        client: redis.Redis,
        policy: Policy | None = None,
        broker: Broker | None = None,
        keys: Keyspace = KEYS,
    ) -> None:
        super().__init__(client, keys)
        self.policy = policy or Policy()
        self.broker = broker
        self._memory_checked_at, self._memory_full = float("-inf"), False
        register = client.register_script
        self._submit = register(scripts.SUBMIT)
        self._cancel = register(scripts.CANCEL)
        self._end_queued = register(scripts.END_QUEUED)
        self._collect = register(scripts.COLLECT)
        self._release = register(scripts.RELEASE)
        self._delete = register(scripts.DELETE)
        self._claim = register(attempt_scripts.CLAIM)
        self._append = register(attempt_scripts.APPEND)
        self._finish = register(attempt_scripts.FINISH)
        self._renew = register(attempt_scripts.RENEW)
        self._hold = register(attempt_scripts.HOLD)
        self._stale = register(attempt_scripts.STALE)
        self._requeue = register(attempt_scripts.REQUEUE)
        self._hand_back = register(attempt_scripts.HAND_BACK)
        self._unhold = register(attempt_scripts.UNHOLD)
        self._unreplicated = 0
        #: Streams running jobs' deltas, batched across jobs (a worker's; its thread starts on first use).
        self.deltas = DeltaWriter(self)

    def replicated(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run a step; with `policy.replicas`, answer only once that many replicas hold it (or after REPLICA_WAIT_MS).

        Redis replicates asynchronously: a failover loses what the master
        acknowledged and had not yet sent. WAIT on the step's own connection
        closes that window for the two writes a client is told about, an
        accepted job and its end. A replica that does not answer in time is
        logged, not refused: losing the replica must not stop the service.
        """
        if not self.policy.replicas:
            return script(keys=keys, args=args)
        with self.redis.pipeline(transaction=False) as pipe:
            script(keys=keys, args=args, client=pipe)
            pipe.execute_command("WAIT", self.policy.replicas, REPLICA_WAIT_MS)
            reply, acknowledged = pipe.execute()
        if int(acknowledged) < self.policy.replicas:
            self._unreplicated += 1
            if self._unreplicated == 1 or self._unreplicated % 1000 == 0:
                log.warning("%d write(s) answered before a replica had them (is the replica down?)", self._unreplicated)
        return reply

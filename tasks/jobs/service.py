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

from collections.abc import Callable

import redis

from tasks.jobs import attempt_scripts, scripts
from tasks.jobs.attempts import Attempts
from tasks.jobs.policy import Policy
from tasks.jobs.reads import JobReads
from tasks.jobs.record import Job
from tasks.jobs.recovery import Recovery
from tasks.jobs.submission import Submission
from tasks.keyspace import KEYS, Keyspace


class JobService(Submission, Attempts, Recovery, JobReads):
    """`send` puts a job's message on the broker (tasks.dispatch); the API and the reconciler pass one."""

    def __init__(
        self,
        client: redis.Redis,
        policy: Policy | None = None,
        send: Callable[[Job], None] | None = None,
        keys: Keyspace = KEYS,
    ) -> None:
        super().__init__(client, keys)
        self.policy = policy or Policy()
        self.send = send
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
        self._stale = register(attempt_scripts.STALE)
        self._requeue = register(attempt_scripts.REQUEUE)
        self._hand_back = register(attempt_scripts.HAND_BACK)
        self._unhold = register(attempt_scripts.UNHOLD)

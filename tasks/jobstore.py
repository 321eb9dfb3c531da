"""Job records and job event streams in Redis: the source of truth for every job.

A job is a hash `inferq:job:<id>` (owner, model, status, timestamps, request,
result or error) and a stream `inferq:job:<id>:events` the worker appends to:
`delta` events while it generates (only when someone will read them) and one
terminal `end` event. Waiters block on the stream, so nobody polls Redis and a
result written before the waiter arrived is never missed.

Every state change is a compare-and-set (Lua, atomic in Redis): a job starts
only from `queued`, and only the attempt that started it may finish it. That
is what makes redelivery safe: a message delivered twice (a dead worker's
message restored by the broker, a job re-queued by the reconciler while its
first worker was merely slow) runs or writes a result at most once.

Side indexes, all keyed by model or owner:
- `inferq:queue:<model>` (zset): queued jobs in dispatch order → `position`.
- `inferq:leases` (zset): jobs held by a live worker, scored by last renewal;
  a stale lease means the worker died (see tasks.reconciler).
- `inferq:deadlines` (zset): queued jobs with an `expires_in`.
- `inferq:done:<model>` (zset): recent completions → measured throughput.
- `inferq:owner:<owner>:jobs` (zset): an owner's queue jobs, newest first.
- `inferq:gone:<id>`: a tombstone that outlives the record, so a job removed
  after the retention period answers "expired", not "never existed".
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import redis

from tasks import stats
from tasks import usage as usage_log

PREFIX = "inferq"
TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "expired")
#: Priorities follow the broker: 0 runs first, 9 last.
PRIORITY_SCALE = 10**13
THROUGHPUT_WINDOW = 300.0
TOMBSTONE_EXTRA = 30 * 24 * 3600


def new_job_id() -> str:
    """Unguessable: 128 random bits."""
    return "job_" + secrets.token_hex(16)


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def events_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def queue_key(model: str) -> str:
    return f"{PREFIX}:queue:{model}"


def done_key(model: str) -> str:
    return f"{PREFIX}:done:{model}"


def owner_key(owner: str) -> str:
    return f"{PREFIX}:owner:{owner}:jobs"


def tombstone_key(job_id: str) -> str:
    return f"{PREFIX}:gone:{job_id}"


LEASES = f"{PREFIX}:leases"
DEADLINES = f"{PREFIX}:deadlines"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    record: dict[str, Any] = {_text(k): _text(v) for k, v in raw.items()}
    for key in ("request", "result", "error", "usage"):
        if record.get(key):
            record[key] = json.loads(record[key])
    for key in ("created_at", "started_at", "completed_at", "expires_at"):
        if record.get(key):
            record[key] = float(record[key])
    for key in ("stream", "error_status", "attempts", "priority"):
        if record.get(key, "") != "":
            record[key] = int(record[key])
    return record


def dispatch_score(priority: int, created_at: float) -> float:
    return priority * PRIORITY_SCALE + int(created_at * 1000)


# KEYS: job, queue zset, deadlines, leases. ARGV: now.
# Returns {status, attempt}: status "start" when this caller should run it.
_START = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', 0} end
if status ~= 'queued' then return {status, 0} end
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at') or '')
if expires and expires < tonumber(ARGV[1]) then
  return {'expire', 0}
end
local attempt = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSET', KEYS[1], 'status', 'in_progress', 'started_at', ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[2])
return {'start', attempt}
"""

# KEYS: job, events, leases. ARGV: attempt, now, retention, fields (json), job id.
# Writes the terminal state only for the attempt that holds the job; returns
# {final status, model} when it wrote, 0 when it did not.
_FINISH = """
local status = redis.call('HGET', KEYS[1], 'status')
local attempts = redis.call('HGET', KEYS[1], 'attempts')
if not status then return 0 end
if attempts ~= ARGV[1] then return 0 end
if status ~= 'in_progress' and status ~= 'cancelled' then return 0 end
if status == 'cancelled' and redis.call('HEXISTS', KEYS[1], 'usage') == 1 then return 0 end
local fields = cjson.decode(ARGV[4])
if status == 'cancelled' then
  -- Cancelled while it ran: keep it cancelled, record only what was generated.
  if fields['usage'] then redis.call('HSET', KEYS[1], 'usage', fields['usage']) end
  redis.call('HSET', KEYS[1], 'completed_at', fields['completed_at'])
else
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
end
local final = redis.call('HGET', KEYS[1], 'status')
redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', final)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('ZREM', KEYS[3], ARGV[5])
return {final, redis.call('HGET', KEYS[1], 'model')}
"""

# KEYS: job, events, queue zset, deadlines. ARGV: now, retention, job id, new status.
# The end of a job that never started (cancelled or expired while queued): no
# worker will write its end, so wake its waiters here.
_END_QUEUED_BODY = """
redis.call('HSET', KEYS[1], 'status', ARGV[4], 'completed_at', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'type', 'end', 'status', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('ZREM', KEYS[4], ARGV[3])
"""

_END_QUEUED = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' then return 0 end
{_END_QUEUED_BODY}
return 1
"""

# Same KEYS and ARGV (ARGV[4] = 'cancelled'). A queued job ends now; a running
# one is only marked, and its worker aborts it and writes its end (tasks.cancellation).
_CANCEL = f"""
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return 0 end
if status == 'completed' or status == 'failed' or status == 'cancelled' or status == 'expired' then return -1 end
if status == 'queued' then
{_END_QUEUED_BODY}
  return 1
end
redis.call('HSET', KEYS[1], 'status', 'cancelled', 'completed_at', ARGV[1])
return 2
"""

#: What JobStore.cancel answers.
NOT_FOUND, ALREADY_ENDED, CANCELLED_QUEUED, CANCELLED_RUNNING = 0, -1, 1, 2

# KEYS: job, queue zset, leases. ARGV: job id, score.
# Puts a job whose worker died back in the queue (the caller re-sends its message).
_REQUEUE = """
local status = redis.call('HGET', KEYS[1], 'status')
redis.call('ZREM', KEYS[3], ARGV[1])
if status ~= 'queued' and status ~= 'in_progress' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""


class JobStore:
    def __init__(self, client: redis.Redis, retention_seconds: int) -> None:
        self.redis = client
        self.retention = int(retention_seconds)
        self._start = client.register_script(_START)
        self._finish = client.register_script(_FINISH)
        self._end_queued = client.register_script(_END_QUEUED)
        self._cancel = client.register_script(_CANCEL)
        self._requeue = client.register_script(_REQUEUE)

    # -- written by the API --------------------------------------------------
    def create(
        self,
        *,
        job_id: str,
        owner: str,
        model: str,
        endpoint: str,
        request: dict[str, Any],
        stream: bool,
        priority: int = 5,
        expires_in: float | None = None,
        listed: bool = False,
    ) -> dict[str, Any]:
        """Write a queued job. `listed` jobs (batch submissions) appear in the owner's job list."""
        now = time.time()
        record: dict[str, Any] = {
            "id": job_id,
            "owner": owner,
            "model": model,
            "endpoint": endpoint,
            "status": "queued",
            "created_at": now,
            "stream": int(stream),
            "priority": priority,
            "attempts": 0,
            "request": _dumps(request),
        }
        if expires_in is not None:
            record["expires_at"] = now + expires_in
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(job_key(job_id), mapping=record)
        # A job that never finishes still goes away eventually.
        pipe.expire(job_key(job_id), self.retention + TOMBSTONE_EXTRA)
        pipe.zadd(queue_key(model), {job_id: dispatch_score(priority, now)})
        if expires_in is not None:
            pipe.zadd(DEADLINES, {job_id: record["expires_at"]})
        if listed:
            pipe.zadd(owner_key(owner), {job_id: now})
        pipe.set(tombstone_key(job_id), owner, ex=self.retention + TOMBSTONE_EXTRA)
        stats.count_submitted(pipe, model)
        pipe.zrank(queue_key(model), job_id)
        position = pipe.execute()[-1]
        record["request"] = request
        record["position"] = int(position) if position is not None else None  # answered in the same round trip
        if expires_in is not None:
            record["expires_at"] = float(record["expires_at"])
        return record

    def get(self, job_id: str) -> dict[str, Any] | None:
        raw = self.redis.hgetall(job_key(job_id))
        return _decode(raw) if raw else None

    def status(self, job_id: str) -> str | None:
        return _text(self.redis.hget(job_key(job_id), "status"))

    def existed(self, job_id: str) -> str | None:
        """The owner of a job whose record is gone (past retention), if it ever existed."""
        return _text(self.redis.get(tombstone_key(job_id)))

    def position(self, model: str, job_id: str) -> int | None:
        rank = self.redis.zrank(queue_key(model), job_id)
        return int(rank) if rank is not None else None

    def throughput(self, model: str, window: float = THROUGHPUT_WINDOW) -> float | None:
        """Jobs per second this model finished recently; None before any finished."""
        now = time.time()
        finished = self.redis.zcount(done_key(model), now - window, now)
        if not finished:
            return None
        oldest = self.redis.zrangebyscore(done_key(model), now - window, now, start=0, num=1, withscores=True)
        span = max(now - oldest[0][1], 1.0) if oldest else window
        return finished / span

    def owner_jobs(self, owner: str, start: int, count: int) -> list[str]:
        return [_text(j) for j in self.redis.zrevrange(owner_key(owner), start, start + count - 1)]

    def owner_rank(self, owner: str, job_id: str) -> int | None:
        rank = self.redis.zrevrank(owner_key(owner), job_id)
        return int(rank) if rank is not None else None

    def forget(self, owner: str, job_ids: list[str]) -> None:
        if job_ids:
            self.redis.zrem(owner_key(owner), *job_ids)

    def end_queued(self, job_id: str, model: str, status: str) -> bool:
        """Expire (or cancel) a job that has not started; wakes its waiters."""
        keys = [job_key(job_id), events_key(job_id), queue_key(model), DEADLINES]
        ended = bool(self._end_queued(keys=keys, args=[time.time(), self.retention, job_id, status]))
        if ended:
            stats.count_ended(self.redis, model, status)
        return ended

    def cancel(self, job_id: str, model: str) -> int:
        """Cancel a job atomically, whatever its state; returns one of NOT_FOUND ... CANCELLED_RUNNING."""
        keys = [job_key(job_id), events_key(job_id), queue_key(model), DEADLINES]
        outcome = int(self._cancel(keys=keys, args=[time.time(), self.retention, job_id, "cancelled"]))
        if outcome == CANCELLED_QUEUED:
            stats.count_ended(self.redis, model, "cancelled")
        return outcome

    # -- written by the worker -----------------------------------------------
    def start(self, job_id: str, model: str) -> int | None:
        """Claim a queued job; return the attempt number, or None if it must not run."""
        now = time.time()
        outcome, attempt = self._start(keys=[job_key(job_id), queue_key(model), DEADLINES, LEASES], args=[now, job_id])
        if _text(outcome) == "expire":
            self.end_queued(job_id, model, "expired")
            return None
        return int(attempt) if _text(outcome) == "start" else None

    def renew_leases(self, job_ids: list[str]) -> None:
        if job_ids:
            now = time.time()
            self.redis.zadd(LEASES, dict.fromkeys(job_ids, now), xx=False)

    def append_delta(self, job_id: str, payload: dict[str, Any]) -> None:
        self.redis.xadd(events_key(job_id), {"type": "delta", "data": _dumps(payload)})

    def finish(
        self,
        job_id: str,
        *,
        attempt: int,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        error_status: int | None = None,
        usage: dict[str, Any] | None = None,
    ) -> bool:
        """Write the terminal state and wake every waiter, atomically, once per job.

        A job cancelled while it ran stays `cancelled`; only its usage is added.
        """
        now = time.time()
        fields: dict[str, Any] = {"status": status, "completed_at": now}
        if result is not None:
            fields["result"] = _dumps(result)
        if error is not None:
            fields["error"] = _dumps(error)
            fields["error_status"] = error_status or 500
        if usage is not None:
            fields["usage"] = _dumps(usage)
        fields = {key: str(value) for key, value in fields.items()}
        keys = [job_key(job_id), events_key(job_id), LEASES]
        if usage is not None:
            # Billed before the end event wakes the client, and once per job (tasks.usage).
            usage_log.record(self.redis, job_key(job_id), usage, now)
        outcome = self._finish(keys=keys, args=[attempt, now, self.retention, _dumps(fields), job_id])
        if not outcome:
            return False
        # A job cancelled while it ran stays cancelled: count the status it ended in.
        ended_status, model = (_text(v) for v in outcome)
        stats.count_ended(self.redis, model, ended_status, usage)
        if ended_status == "completed":
            pipe = self.redis.pipeline(transaction=False)
            pipe.zadd(done_key(model), {job_id: now})
            pipe.zremrangebyscore(done_key(model), "-inf", now - THROUGHPUT_WINDOW)
            pipe.execute()
        return True

    # -- the reconciler ------------------------------------------------------
    def stale_leases(self, older_than: float) -> list[str]:
        return [_text(j) for j in self.redis.zrangebyscore(LEASES, "-inf", time.time() - older_than)]

    def requeue(self, job_id: str) -> dict[str, Any] | None:
        """Put a dead worker's job back in the queue; the caller re-sends its message."""
        record = self.get(job_id)
        if record is None:
            self.redis.zrem(LEASES, job_id)
            return None
        score = dispatch_score(record.get("priority", 5), record["created_at"])
        keys = [job_key(job_id), queue_key(record["model"]), LEASES]
        return record if self._requeue(keys=keys, args=[job_id, score]) else None

    def overdue(self) -> list[str]:
        return [_text(j) for j in self.redis.zrangebyscore(DEADLINES, "-inf", time.time())]

    # -- read by waiters -----------------------------------------------------
    def read_events(self, job_id: str, last_id: str, block_ms: int) -> list[tuple[str, dict[str, str]]]:
        reply = self.redis.xread({events_key(job_id): last_id}, block=block_ms)
        events = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                events.append((_text(entry_id), {_text(k): _text(v) for k, v in fields.items()}))
        return events

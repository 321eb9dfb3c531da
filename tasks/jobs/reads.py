"""The read side of the job service: records, event streams, queue position, listings.

Split from the writes (tasks.jobs.service) only to keep each module small;
JobService is the one class callers use.
"""

from __future__ import annotations

import json

import redis

from tasks.jobs.event_hub import EventHub, Waiter
from tasks.jobs.record import Job
from tasks.keyspace import Keyspace
from workers.outputs import Delta

#: Completions within this window give a model's measured throughput.
THROUGHPUT_WINDOW_SECONDS = 300.0


class JobReads:
    def __init__(self, client: redis.Redis, keys: Keyspace) -> None:
        self.redis, self.keys = client, keys
        #: Reads the events of every job this process waits on, in one XREAD (its thread starts on first use).
        self.hub = EventHub(client)

    def server_time(self) -> float:
        """Redis's clock: the one every host's decisions about leases, heartbeats and deadlines share."""
        seconds, micros = self.redis.time()
        return seconds + micros / 1e6

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.hgetall(self.keys.job(job_id))
        return Job.from_hash(raw) if raw else None

    def get_many(self, job_ids: list[str]) -> list[Job | None]:
        """Records in one round trip (a listing page reads dozens)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hgetall(self.keys.job(job_id))
        return [Job.from_hash(raw) if raw else None for raw in pipe.execute()]

    # -- waiters -----------------------------------------------------------------------
    def watch(self, job_id: str, last_id: str = "0-0") -> Waiter:
        """The job's events after `last_id`, read by this process's one blocking reader: nobody polls Redis.

        Close the waiter (it is a context manager) once done with the job.
        """
        return self.hub.join(self.keys.events(job_id), last_id)

    def has_events(self, job_id: str) -> bool:
        """False once the stream is gone: expired with its job, or trimmed after a synchronous delivery."""
        return bool(self.redis.exists(self.keys.events(job_id)))

    def deltas_until(self, job_id: str, last_id: str) -> list[Delta]:
        """The deltas a client already received before it resumed at `last_id`."""
        entries = self.redis.xrange(self.keys.events(job_id), "-", last_id)
        return [Delta.from_json(json.loads(f[b"data"])) for _, f in entries if f.get(b"type") == b"delta"]

    # -- the queue ---------------------------------------------------------------------
    def position(self, job: Job) -> int | None:
        """Jobs ahead of this one in its model's queue (priority, then arrival); None unless queued."""
        if job.status != "queued":
            return None
        if job.position is not None:
            return job.position
        rank = self.redis.zrank(self.keys.queue(job.model), job.id)
        return int(rank) if rank is not None else None

    def queue_depths(self, models: list[str]) -> list[int]:
        pipe = self.redis.pipeline(transaction=False)
        for model in models:
            pipe.zcard(self.keys.queue(model))
        return pipe.execute()

    def held_per_model(self) -> dict[str, dict[str, int]]:
        """Jobs a worker holds (a lease), per model and status: `queued` = received, not started yet."""
        held = self.redis.zrange(self.keys.leases, 0, -1)
        if not held:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for job_id in held:
            pipe.hmget(self.keys.job(job_id.decode()), "model", "status")
        counts: dict[str, dict[str, int]] = {}
        for model, status in pipe.execute():
            if model is not None and status is not None:
                by_status = counts.setdefault(model.decode(), {})
                by_status[status.decode()] = by_status.get(status.decode(), 0) + 1
        return counts

    def running_per_model(self) -> dict[str, int]:
        """Jobs held by a worker and in progress, per model (what the leases index knows)."""
        return {model: by_status.get("in_progress", 0) for model, by_status in self.held_per_model().items()}

    def throughput(self, model: str) -> float | None:
        """Jobs per second this model finished recently; None before any finished."""
        now, key = self.server_time(), self.keys.done(model)
        oldest = self.redis.zrangebyscore(key, now - THROUGHPUT_WINDOW_SECONDS, now, start=0, num=1, withscores=True)
        if not oldest:
            return None
        finished = self.redis.zcount(key, now - THROUGHPUT_WINDOW_SECONDS, now)
        return finished / max(now - oldest[0][1], 1.0)

    # -- an owner's jobs ---------------------------------------------------------------
    def owner_page(self, owner: str, status: str | None, limit: int, after: str | None) -> tuple[list[Job], bool]:
        """Newest first; `after` is the last id of the previous page. Ids past retention are pruned."""
        key = self.keys.owner_jobs(owner)
        start = 0
        if after:
            rank = self.redis.zrevrank(key, after)
            if rank is None:
                return [], False
            start = rank + 1
        page: list[Job] = []
        # Unfiltered, limit + 1 records answer the page and has_more; a status filter reads on in larger steps.
        batch = limit + 1 if status is None else max(limit * 2, 50)
        while len(page) <= limit:
            ids = [raw.decode() for raw in self.redis.zrevrange(key, start, start + batch - 1)]
            if not ids:
                break
            start += len(ids)
            gone = []
            for job_id, job in zip(ids, self.get_many(ids), strict=True):
                if job is None:
                    gone.append(job_id)
                elif status is None or job.status == status:
                    page.append(job)
            if gone:
                self.redis.zrem(key, *gone)
        return page[:limit], len(page) > limit

    def knows(self, owner: str, job_id: str) -> bool:
        return self.redis.zrevrank(self.keys.owner_jobs(owner), job_id) is not None

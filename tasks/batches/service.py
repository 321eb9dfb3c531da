"""Every batch state change and read, in one class (the API's side and the runner's side).

Nothing else touches a batch's keys; each change is one step of
tasks.batches.scripts.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from tasks.batches import scripts
from tasks.batches.record import Batch, new_batch_id
from tasks.keyspace import KEYS, Keyspace
from tasks.protocol.errors import NotFound

#: How many per-line errors a failed batch lists (the count is in the message).
MAX_LISTED_ERRORS = 1000


class BatchService:
    def __init__(self, client: redis.Redis, keys: Keyspace = KEYS) -> None:
        self.redis, self.keys = client, keys
        register = client.register_script
        self._create, self._touch = register(scripts.CREATE), register(scripts.TOUCH)
        self._start, self._fail = register(scripts.START), register(scripts.FAIL)
        self._cancel, self._expire = register(scripts.CANCEL), register(scripts.EXPIRE)
        self._feed, self._harvest = register(scripts.FEED), register(scripts.HARVEST)
        self._finalizing, self._end = register(scripts.FINALIZING), register(scripts.END)

    # -- the API's side ------------------------------------------------------------------
    def create(
        self, owner: str, endpoint: str, input_file_id: str, window: str, window_seconds: float, metadata: Any
    ) -> Batch:
        """A batch in `validating`; the caller validates its lines next (start or fail)."""
        batch_id, k = new_batch_id(), self.keys
        args = [batch_id, owner, endpoint, input_file_id, window, window_seconds, json.dumps(metadata or {})]
        self._create(keys=[k.batch(batch_id), k.owner_batches(owner), k.active_batches], args=args)
        return self.get(batch_id)  # type: ignore[return-value]

    def touch(self, batch_id: str) -> None:
        self._touch(keys=[self.keys.batch(batch_id)])

    def start(self, batch_id: str, total: int, model: str) -> str:
        return self._start(keys=[self.keys.batch(batch_id)], args=[total, model]).decode()

    def fail(self, batch_id: str, errors: list[dict[str, Any]], total: int, stale_after: float | None = None) -> bool:
        """Validation failed; with `stale_after`, only if its API process gave no sign of life that long."""
        keys = [self.keys.batch(batch_id), self.keys.active_batches]
        stale = "" if stale_after is None else stale_after
        return bool(self._fail(keys=keys, args=[json.dumps(errors[:MAX_LISTED_ERRORS]), total, stale]))

    def cancel(self, batch_id: str) -> str:
        return self._cancel(keys=[self.keys.batch(batch_id)]).decode()

    def get(self, batch_id: str) -> Batch | None:
        raw = self.redis.hgetall(self.keys.batch(batch_id))
        return Batch.from_hash(raw) if raw else None

    def owned(self, batch_id: str, owner: str) -> Batch:
        batch = self.get(batch_id)
        if batch is None or batch.owner != owner:
            raise NotFound(f"No batch found with id '{batch_id}'.", param="batch_id", code="batch_not_found")
        return batch

    def page(self, owner: str, limit: int, after: str | None) -> tuple[list[Batch], bool]:
        """Newest first; `after` is the last id of the previous page."""
        key, start = self.keys.owner_batches(owner), 0
        if after:
            rank = self.redis.zrevrank(key, after)
            if rank is None:
                raise NotFound(f"No batch found with id '{after}'.", param="after", code="batch_not_found")
            start = rank + 1
        ids = [raw.decode() for raw in self.redis.zrevrange(key, start, start + limit)]
        batches = [batch for batch in (self.get(batch_id) for batch_id in ids) if batch is not None]
        return batches[:limit], len(ids) > limit

    # -- the runner's side ---------------------------------------------------------------
    def active(self) -> list[str]:
        return [raw.decode() for raw in self.redis.zrange(self.keys.active_batches, 0, -1)]

    def inflight(self, batch_id: str) -> dict[int, str]:
        raw = self.redis.hgetall(self.keys.batch_inflight(batch_id))
        return {int(index): custom_id.decode() for index, custom_id in raw.items()}

    def inflight_count(self, batch_id: str) -> int:
        return int(self.redis.hlen(self.keys.batch_inflight(batch_id)))

    def chunks(self, batch_id: str) -> list[str]:
        return [raw.decode() for raw in self.redis.lrange(self.keys.batch_chunks(batch_id), 0, -1)]

    def expire(self, batch_id: str) -> bool:
        return bool(self._expire(keys=[self.keys.batch(batch_id)]))

    def commit_feed(self, batch: Batch, fed: int, offset: int, lines: dict[int, str]) -> bool:
        keys = [self.keys.batch(batch.id), self.keys.batch_inflight(batch.id)]
        pairs = [item for index, custom_id in lines.items() for item in (index, custom_id)]
        return bool(self._feed(keys=keys, args=[batch.fed, fed, offset, *pairs]))

    def commit_harvest(self, batch_id: str, token: str, counts: tuple[int, int, int, int], indexes: list[int]) -> bool:
        k = self.keys
        keys = [k.batch(batch_id), k.batch_inflight(batch_id), k.batch_chunks(batch_id)]
        return bool(self._harvest(keys=keys, args=[token, *counts, *indexes]))

    def finalizing(self, batch_id: str) -> str:
        keys = [self.keys.batch(batch_id), self.keys.batch_inflight(batch_id)]
        return self._finalizing(keys=keys).decode()

    def end(self, batch: Batch, final: str, output_id: str, error_id: str, unfed: int) -> bool:
        k = self.keys
        keys = [k.batch(batch.id), k.active_batches, k.batch_inflight(batch.id), k.batch_chunks(batch.id)]
        return bool(self._end(keys=keys, args=[final, batch.status, output_id, error_id, unfed]))

"""Every Redis key inferq writes, named in one place.

The job service passes these names to its Lua scripts as KEYS, so no script
builds a key, and a second deployment sharing one Redis only needs another
prefix. Celery's own keys (the `model.<id>` queues, `unacked`) are kombu's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keyspace:
    prefix: str = "inferq"

    # -- one job -------------------------------------------------------------
    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:events"

    def tombstone(self, job_id: str) -> str:
        return f"{self.prefix}:gone:{job_id}"

    # -- indexes ---------------------------------------------------------------
    def queue(self, model: str) -> str:
        """Queued jobs of a model in dispatch order: `position`."""
        return f"{self.prefix}:queue:{model}"

    def done(self, model: str) -> str:
        """Recent completions of a model: its measured throughput."""
        return f"{self.prefix}:done:{model}"

    def owner_jobs(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}:jobs"

    def open_jobs(self, owner: str) -> str:
        """The owner's jobs that have not ended (queued or running): its open-jobs cap."""
        return f"{self.prefix}:owner:{owner}:open"

    def waiting(self, owner: str) -> str:
        """The owner's callers holding a connection (synchronous waits, streams), scored by deadline."""
        return f"{self.prefix}:owner:{owner}:waiting"

    def idempotency(self, owner: str, digest: str) -> str:
        return f"{self.prefix}:idem:{owner}:{digest}"

    @property
    def leases(self) -> str:
        return f"{self.prefix}:leases"

    @property
    def deadlines(self) -> str:
        return f"{self.prefix}:deadlines"

    # -- billing and counters ----------------------------------------------------
    def usage(self, owner: str, day: str) -> str:
        return f"{self.prefix}:usage:{owner}:{day}"

    def tpm(self, owner: str, minute: int) -> str:
        return f"{self.prefix}:tpm:{owner}:{minute}"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    # -- workers -------------------------------------------------------------------
    def workers(self, model: str) -> str:
        return f"{self.prefix}:workers:{model}"

    def worker_loads(self, model: str) -> str:
        return f"{self.prefix}:workers:{model}:load"

    @property
    def cancel_channel(self) -> str:
        return f"{self.prefix}:cancel"

    @property
    def reconciler_lock(self) -> str:
        return f"{self.prefix}:reconciler:lock"

    def orphan_sweep(self, model: str) -> str:
        """Set while a model's orphan sweep is not due: one sweep per interval, whoever runs it."""
        return f"{self.prefix}:reconciler:orphans:{model}"

    # -- files and batches ----------------------------------------------------------
    def file(self, file_id: str) -> str:
        return f"{self.prefix}:file:{file_id}"

    def owner_files(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}:files"

    def batch(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    def batch_inflight(self, batch_id: str) -> str:
        """Lines fed to the queue and not yet harvested: line index -> custom_id."""
        return f"{self.prefix}:batch:{batch_id}:inflight"

    def batch_chunks(self, batch_id: str) -> str:
        """Committed chunk names of harvested lines, in order."""
        return f"{self.prefix}:batch:{batch_id}:chunks"

    def owner_batches(self, owner: str) -> str:
        return f"{self.prefix}:owner:{owner}:batches"

    @property
    def active_batches(self) -> str:
        """Batches not yet ended (validating, in progress, cancelling, finalizing)."""
        return f"{self.prefix}:batches:active"

    @property
    def batch_lock(self) -> str:
        return f"{self.prefix}:batches:lock"

    # -- API keys ------------------------------------------------------------------
    def api_key(self, digest: str) -> str:
        return f"{self.prefix}:key:{digest}"

    @property
    def api_keys(self) -> str:
        return f"{self.prefix}:keys"


KEYS = Keyspace()

"""The batch runner: feed each batch's lines to the queue in windows, harvest them, write its files.

It runs in every worker beside the reconciler (tasks.worker) and takes turns
through a Redis lock, so a deployment runs one round at a time whoever holds
it, and a round survives the death of the worker that ran the last one. A
round, for each active batch:

1. feed: top its in-flight lines up to `window` jobs, read from its prepared
   file, each submitted under an id derived from the batch and the line (a
   feed repeated after a crash finds the jobs already there);
2. harvest: the jobs that ended go into a chunk file (output and error lines)
   and are counted, all in one step that counts a line only while it is
   still in flight; then the jobs are trimmed like a delivered synchronous job;
3. finalize: once nothing is in flight and every line was fed (or the batch
   was cancelled or ran past its window), the chunks become the output and
   error files and the batch ends.

Jobs are billed by the job service when each one ends (once, whatever the
polling); the batch's `usage` is the sum of its harvested jobs' usage.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import BinaryIO

import redis

from tasks.batches.lines import Harvest, stopped_line
from tasks.batches.record import (
    BATCH_PRIORITY,
    Batch,
    batch_dir,
    chunk_name,
    line_job_id,
    output_file_id,
    prepared_name,
)
from tasks.batches.service import BatchService
from tasks.files import OUTPUT_PURPOSE, FileService
from tasks.jobs import Job, JobService
from tasks.protocol.errors import APIError
from tasks.protocol.requests import request_from_json
from tasks.storage import CHUNK_BYTES

log = logging.getLogger(__name__)

#: The round lock's lifetime: a round that outlives it may overlap the next, which every step tolerates.
LOCK_MS = 30_000
#: A batch whose validating API process gave no sign of life this long fails (no batch stays `validating`).
VALIDATION_STALE_SECONDS = 60.0
#: What a batch that stopped before its end becomes, by how it stopped.
FINAL = {"finalizing": "completed", "cancelling": "cancelled", "in_progress": "expired"}
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class BatchRunner:
    def __init__(self, jobs: JobService, files: FileService, window: int) -> None:
        self.jobs, self.files, self.window = jobs, files, window
        self.batches = BatchService(jobs.redis, jobs.keys)
        self.storage = files.storage
        self._release = jobs.redis.register_script(_RELEASE)

    def run_once(self) -> int:
        """One round over every active batch, unless another process holds the round; batches stepped.

        With no active batch (the usual case) a round is one read: every worker
        runs this each second, and the lock's two round trips would buy nothing.
        """
        if not self.batches.active():
            return 0
        token, lock = secrets.token_hex(8), self.jobs.keys.batch_lock
        if not self.jobs.redis.set(lock, token, nx=True, px=LOCK_MS):
            return 0
        stepped = 0
        try:
            for batch_id in self.batches.active():
                batch = self.batches.get(batch_id)
                if batch is None:
                    continue
                try:
                    self.step(batch)
                    stepped += 1
                except redis.RedisError:
                    raise  # Redis away: the loop retries the whole round
                except Exception:  # noqa: BLE001 - one broken batch must not stop the others
                    log.exception("batch %s: round failed; retrying next round", batch_id)
        finally:
            self._release(keys=[lock], args=[token])
        return stepped

    def step(self, batch: Batch) -> None:
        if "in_progress_at" not in batch.times:  # still validating (possibly cancelled meanwhile)
            if self.batches.fail(batch.id, [_abandoned()], 0, stale_after=VALIDATION_STALE_SECONDS):
                log.warning("batch %s: its validation stopped (API process gone); failed", batch.id)
            return
        if batch.status == "in_progress" and not batch.stop and self.batches.expire(batch.id):
            batch.stop = "expired"
        stopping = batch.status == "cancelling" or batch.stop == "expired"
        if stopping:
            self._cancel_inflight(batch)
        elif batch.status == "in_progress":
            self._feed(batch)
        self._harvest(batch, "expired" if batch.stop == "expired" else "cancelled")
        if self.batches.inflight_count(batch.id) == 0:
            self._finalize(batch)

    # -- feed ------------------------------------------------------------------------
    def _feed(self, batch: Batch) -> None:
        room = self.window - self.batches.inflight_count(batch.id)
        if room <= 0 or batch.fed >= batch.total:
            return
        fed, offset, lines = batch.fed, batch.fed_offset, {}
        with self.storage.reader(prepared_name(batch.id)) as source:
            source.seek(offset)
            while len(lines) < room and fed < batch.total:
                raw = source.readline()
                if not raw:
                    break
                entry = json.loads(raw)
                try:
                    self.jobs.submit(
                        owner=batch.owner,
                        request=request_from_json(entry["request"]),
                        priority=BATCH_PRIORITY,
                        job_id=line_job_id(batch.id, fed),
                    )
                except APIError as exc:  # the key's open-jobs cap, Redis nearly full: the rest waits
                    log.info("batch %s: feeding paused: %s", batch.id, exc.message)
                    break
                lines[fed] = entry["custom_id"]
                fed, offset = fed + 1, offset + len(raw)
        if lines:
            self.batches.commit_feed(batch, fed, offset, lines)

    def _cancel_inflight(self, batch: Batch) -> None:
        for index in self.batches.inflight(batch.id):
            job = self.jobs.get(line_job_id(batch.id, index))
            if job is not None and not job.ended and job.status != "cancelled":
                self.jobs.cancel(job)

    # -- harvest ---------------------------------------------------------------------
    def _harvest(self, batch: Batch, stopped_as: str) -> None:
        inflight = self.batches.inflight(batch.id)
        if not inflight:
            return
        pipe = self.jobs.redis.pipeline(transaction=False)
        for index in inflight:
            pipe.hmget(self.jobs.keys.job(line_job_id(batch.id, index)), "status", "ended")
        ended = [
            index
            for index, (status, done) in zip(inflight, pipe.execute(), strict=True)
            if status is None or done == b"1"
        ]
        if not ended:
            return
        harvest, jobs = Harvest([], []), []
        for index in ended:
            job = self.jobs.get(line_job_id(batch.id, index))
            harvest.add(inflight[index], line_job_id(batch.id, index), job, stopped_as)
            if job is not None:
                jobs.append(job)
        token = secrets.token_hex(8)
        for kind, lines in (("out", harvest.output), ("err", harvest.errors)):
            if lines:
                with self.storage.writer(chunk_name(batch.id, token, kind)) as sink:
                    sink.writelines(lines)
        counts = (len(harvest.output), len(harvest.errors), harvest.prompt_tokens, harvest.completion_tokens)
        if self.batches.commit_harvest(batch.id, token, counts, ended):
            self._trim(jobs)
        else:  # another round counted them first
            for kind in ("out", "err"):
                self.storage.delete(chunk_name(batch.id, token, kind))

    def _trim(self, jobs: list[Job]) -> None:
        """The lines are in a chunk file: keep only what billing needs of their jobs."""
        for job in jobs:
            self.jobs.collect(job)

    # -- finalize --------------------------------------------------------------------
    def _finalize(self, batch: Batch) -> None:
        if batch.status == "in_progress" and not batch.stop:
            if self.batches.finalizing(batch.id) != "finalizing":
                return  # lines still to feed
            batch = self.batches.get(batch.id) or batch
        final = FINAL.get(batch.status)
        if final is None:
            return
        chunks = self.batches.chunks(batch.id)
        out_id = self._write(batch, "output", chunks, "out")
        error_id = output_file_id(batch.id, "error")
        with self.files.create(batch.owner, f"{batch.id}_error.jsonl", OUTPUT_PURPOSE, error_id) as sink:
            self._copy_chunks(batch, chunks, "err", sink)
            unfed = 0 if final == "completed" else self._write_unfed(batch, final, sink)
            written = sink.count
        err_id = self._keep(batch, "error", written)
        if self.batches.end(batch, final, out_id, err_id, unfed):
            self.storage.delete_tree(batch_dir(batch.id))
            log.info("batch %s: %s", batch.id, final)

    def _write(self, batch: Batch, kind: str, chunks: list[str], part: str) -> str:
        file_id = output_file_id(batch.id, kind)
        with self.files.create(batch.owner, f"{batch.id}_{kind}.jsonl", OUTPUT_PURPOSE, file_id) as sink:
            self._copy_chunks(batch, chunks, part, sink)
            written = sink.count
        return self._keep(batch, kind, written)

    def _keep(self, batch: Batch, kind: str, written: int) -> str:
        """An empty output (or error) file is not kept: the batch names none."""
        file_id = output_file_id(batch.id, kind)
        if written:
            return file_id
        stored = self.files.get(file_id)
        if stored is not None:
            self.files.delete(stored)
        return ""

    def _copy_chunks(self, batch: Batch, chunks: list[str], part: str, sink: BinaryIO) -> None:
        for token in chunks:
            name = chunk_name(batch.id, token, part)
            if not self.storage.exists(name):
                continue
            with self.storage.reader(name) as source:
                while data := source.read(CHUNK_BYTES):
                    sink.write(data)

    def _write_unfed(self, batch: Batch, final: str, sink: BinaryIO) -> int:
        """Lines never fed (the batch stopped first) go to the error file: every line is in one file."""
        if batch.fed >= batch.total:
            return 0
        count = 0
        with self.storage.reader(prepared_name(batch.id)) as source:
            source.seek(batch.fed_offset)
            for raw in source:
                custom_id = json.loads(raw)["custom_id"]
                sink.write(stopped_line(custom_id, line_job_id(batch.id, batch.fed + count), final))
                count += 1
        return count


def _abandoned() -> dict:
    return {
        "code": "validation_interrupted",
        "message": "The server validating this batch's input stopped before it finished; create the batch again.",
        "param": None,
        "line": None,
    }

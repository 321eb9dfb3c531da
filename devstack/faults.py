"""Faults to inject into a stack of real processes, and the books to check after each.

Why a module of its own, beside `devstack.processes`: the chaos tests, and
anyone reproducing one of their failures by hand, need the same few tools
(kill a process group, find a worker's engine core, delete a job's broker
message, skew a worker's clock, fill Redis to its `maxmemory`) and, after
any fault, the same question answered from Redis alone: did every job a key
had accepted end exactly once, and is what the key was billed what its
jobs' records say they used?

"Accepted" is read from Redis, not from the clients: every job record the key
owns (a synchronous caller whose connection died still owns a job), plus
every id a client was told (a 202's id whose record is gone was lost).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from tasks.celery_app import PRIORITY_STEPS
from tasks.dispatch import queue_name
from tasks.jobs import TERMINAL
from tasks.keyspace import KEYS

#: The directory whose sitecustomize.py shifts a Python process's wall clock (clock_skew_vars).
CLOCK_SKEW_DIR = Path(__file__).resolve().parent / "clock_skew"

# -- the books -----------------------------------------------------------------------


@dataclass
class Books:
    """One key's jobs after a fault, as Redis has them."""

    fault: str
    accepted: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    #: (prompt, completion) tokens: summed over the ended jobs' records, and in the key's usage hashes.
    stored: tuple[int, int] = (0, 0)
    billed: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    records: dict[str, dict[str, str]] = field(default_factory=dict)
    #: What the caller saw go wrong besides the books (clients left waiting, ...).
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        """Everything that breaks the promise, one line each; empty when the books balance."""
        found = list(self.notes)
        found += [f"lost (never ended, or no record): {job_id} {self._state(job_id)}" for job_id in self.lost]
        found += [f"ended more than once: {job_id}" for job_id in self.duplicated]
        if self.stored != self.billed:
            found.append(f"billing differs: records say (prompt, completion) = {self.stored}, usage hash {self.billed}")
        return found

    #: Where each lost job's broker message is: waiting in its queue, unacked (popped by a worker), or nowhere.
    messages: dict[str, str] = field(default_factory=dict)

    def _state(self, job_id: str) -> str:
        record = self.records.get(job_id)
        if record is None:
            return "(no record)"
        where = self.messages.get(job_id, "?")
        return f"(status={record.get('status')} attempts={record.get('attempts')} message={where})"


def owned_jobs(client: redis.Redis, owner: str) -> dict[str, dict[str, str]]:
    """Every job record the key owns, by scanning: the owner index lists only queue jobs, not synchronous ones."""
    names = list(client.scan_iter(match=KEYS.job("*"), count=1000, _type="HASH"))
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    records: dict[str, dict[str, str]] = {}
    for raw in pipe.execute():
        fields = {key.decode(): value.decode() for key, value in raw.items()}
        if fields.get("owner") == owner and "id" in fields:
            records[fields["id"]] = fields
    return records


def end_events(client: redis.Redis, job_id: str) -> int:
    """`end` entries in the job's event stream: what wakes its waiters, so exactly one is the promise."""
    return sum(1 for _, event in client.xrange(KEYS.events(job_id)) if event.get(b"type") == b"end")


def ends(client: redis.Redis, job_id: str, record: dict[str, str] | None) -> int:
    """How often the job ended: its end events, or one for a synchronous job trimmed after delivery.

    Once its caller has read it, a synchronous job keeps no prompt, no result
    and (unless streamed) no event stream; its `ended` mark, set by the one
    step that ended it, is what is left to count.
    """
    if record is None:
        return 0
    found = end_events(client, job_id)
    if found == 0 and record.get("ended") == "1" and "request" not in record:
        return 1
    return found


def billed(client: redis.Redis, owner: str) -> tuple[int, int]:
    """(prompt, completion) tokens in the key's usage hashes, every day and model summed."""
    totals = {"prompt": 0, "completion": 0}
    for name in client.scan_iter(match=KEYS.usage(owner, "*"), count=1000):
        for counter, value in client.hgetall(name).items():
            kind = counter.decode().rpartition(":")[2]
            if kind in totals:
                totals[kind] += int(value)
    return totals["prompt"], totals["completion"]


def stored(records: Iterable[dict[str, str]]) -> tuple[int, int]:
    """(prompt, completion) tokens the ended jobs' records say they used."""
    prompt = completion = 0
    for record in records:
        if record.get("status") in TERMINAL and record.get("usage"):
            usage = json.loads(record["usage"])
            prompt += int(usage.get("prompt_tokens") or 0)
            completion += int(usage.get("completion_tokens") or 0)
    return prompt, completion


def open_jobs(client: redis.Redis, owner: str, told: Iterable[str] = ()) -> list[str]:
    """Accepted jobs that have not ended yet: not terminal, or terminal without their end event."""
    records = owned_jobs(client, owner)
    return [
        job_id
        for job_id in sorted(set(records) | set(told))
        if job_id not in records
        or records[job_id]["status"] not in TERMINAL
        or not ends(client, job_id, records[job_id])
    ]


def audit(client: redis.Redis, fault: str, owner: str, told: Iterable[str] = ()) -> Books:
    """The key's books now: each accepted job counted once, by how it ended (or as lost/duplicated)."""
    records = owned_jobs(client, owner)
    books = Books(fault, records=records)
    for job_id in sorted(set(records) | set(told)):
        books.accepted += 1
        record = records.get(job_id)
        count = ends(client, job_id, record)
        if record is None or record["status"] not in TERMINAL or count == 0:
            books.lost.append(job_id)
        elif count > 1:
            books.duplicated.append(job_id)
        elif record["status"] == "completed":
            books.completed += 1
        elif record["status"] == "cancelled":
            books.cancelled += 1
        else:  # failed, or expired (nothing here sets expires_in)
            books.failed += 1
    books.stored, books.billed = stored(records.values()), billed(client, owner)
    if books.lost:
        books.messages = message_whereabouts(
            client, {job_id: records.get(job_id, {}).get("model") for job_id in books.lost}
        )
    return books


# -- the broker ------------------------------------------------------------------------


def broker_lists(model: str) -> list[str]:
    """Kombu's Redis transport keeps one list per priority step: the queue's name, then `<queue>:<step>`."""
    queue = queue_name(model)
    return [queue] + [f"{queue}:{step}" for step in PRIORITY_STEPS[1:]]


def broker_messages(client: redis.Redis, model: str) -> dict[str, tuple[str, bytes]]:
    """Job id -> (list, raw message) of every message waiting in the model's queue (the task id is the job id)."""
    found: dict[str, tuple[str, bytes]] = {}
    for name in broker_lists(model):
        for raw in client.lrange(name, 0, -1):
            found[json.loads(raw)["headers"]["id"]] = (name, raw)
    return found


def unacked_ids(client: redis.Redis) -> set[str]:
    """Job ids of the messages kombu holds as delivered but not acknowledged (its `unacked` hash)."""
    return {json.loads(raw)[0]["headers"]["id"] for raw in client.hvals("unacked")}


def message_whereabouts(client: redis.Redis, models: dict[str, str | None]) -> dict[str, str]:
    """For each job id (-> its model): `waiting` in its queue, `unacked` (a worker popped it), or `none`."""
    unacked = unacked_ids(client)
    waiting: set[str] = set()
    for model in {m for m in models.values() if m}:
        waiting |= set(broker_messages(client, model))
    return {job_id: "waiting" if job_id in waiting else "unacked" if job_id in unacked else "none" for job_id in models}


def delete_messages(client: redis.Redis, model: str, job_ids: Iterable[str]) -> list[str]:
    """Remove these jobs' waiting messages (an orphaned job: queued, with nothing on the broker); the ids removed."""
    waiting = broker_messages(client, model)
    removed = []
    for job_id in job_ids:
        if job_id in waiting and client.lrem(waiting[job_id][0], 1, waiting[job_id][1]):
            removed.append(job_id)
    return removed


# -- processes ---------------------------------------------------------------------------


def kill_group(process: subprocess.Popen, sig: int = signal.SIGKILL, grace: float = 0.0) -> None:
    """Signal a whole process group (a gunicorn master and its workers; a worker and its engine core).

    With `grace`, a group still alive that long after `sig` gets SIGKILL: a
    teardown should not wait out gunicorn's graceful timeout for clients that
    a fault left hanging.
    """
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)
    try:
        process.wait(grace if sig != signal.SIGKILL else 60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(60)


def engine_cores(pid: int) -> list[psutil.Process]:
    """The vLLM engine core processes below a worker (they name themselves EngineCore)."""
    cores = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "EngineCore" in child.name() or "EngineCore" in " ".join(child.cmdline()):
                cores.append(child)
    return cores


def worker_pid(name: str) -> int | None:
    """The pid in a worker's name, `<model>@<host>-<pid>` (its heartbeat member and Celery hostname)."""
    tail = name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else None


def log_count(path: Path, text: str) -> int:
    """How often a process has logged `text` so far (logs are append-only: compare before and after)."""
    return path.read_text(errors="replace").count(text) if path.exists() else 0


def clock_skew_vars(seconds: float) -> dict[str, str]:
    """Environment that runs a Python process (and its children) with its wall clock moved by `seconds`.

    devstack/clock_skew/sitecustomize.py does the moving (its docstring says
    why not libfaketime); monotonic clocks, sleeps and timed waits stay true.
    """
    path = os.pathsep.join(filter(None, [str(CLOCK_SKEW_DIR), os.environ.get("PYTHONPATH", "")]))
    return {"PYTHONPATH": path, "INFERQ_FAKE_CLOCK_OFFSET_SECONDS": f"{seconds:g}"}


def measured_skew(extra_env: dict[str, str]) -> float:
    """Seconds a Python process started with `extra_env` is off the real wall clock."""
    probe = [sys.executable, "-c", "import time; print(time.time())"]
    seen = float(subprocess.run(probe, env={**os.environ, **extra_env}, capture_output=True, check=True).stdout)
    return seen - time.time()


# -- Redis memory ----------------------------------------------------------------------------


@contextlib.contextmanager
def memory_ceiling(client: redis.Redis, ballast_mb: int = 32, headroom_mb: int = 2) -> Iterator[Callable[[], float]]:
    """Set `maxmemory` just above what Redis uses, and put it back on the way out.

    A fresh Redis uses a megabyte or two, too little for a share of it to
    leave room for the jobs still running; a ballast string (outside the
    inferq keys) stands in for the rest of a full Redis. It is grown with
    SETRANGE, not sent: a 32 MB argument would sit in the connection's query
    buffer, counted in `used_memory` until Redis frees it a moment later, and
    the ceiling computed from it would be 32 MB too high. Yields a function
    that reads the share of `maxmemory` in use.
    """
    before = client.config_get("maxmemory")["maxmemory"]

    def share() -> float:
        info = client.info("memory")
        return int(info["used_memory"]) / max(int(info["maxmemory"]), 1)

    try:
        client.setrange("chaos:ballast", (ballast_mb << 20) - 1, b"\0")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + (headroom_mb << 20))
        yield share
    finally:
        client.config_set("maxmemory", before)
        client.delete("chaos:ballast")

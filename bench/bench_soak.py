"""Soak: what each finished job leaves in Redis, and whether memory comes back down after retention.

    .venv/bin/python bench/bench_soak.py [--sync-jobs N] [--queued-jobs N] [--concurrency 32] [--retention S]

Runs the real stack (its own redis-server, one chat worker, one gunicorn) with
both retention settings at --retention s; pushes synchronous 1-token chats,
then queued ones (submitted, then long-polled to their end); reads Redis
`used_memory` at the start, every --every jobs and after each phase; waits
(SCAN) until retention has removed the job keys and reads it again. Flat: back
within 10 % of the baseline, or (--rounds 2+) of round 1's value after retention.

Per-job figures hold only if no job expires during the load: --retention must
outlast it (the run warns). The baseline follows a warm-up, so the API's Redis
connections (their buffers count in used_memory) are open at both ends; the
warm-up jobs' own keys are subtracted from it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import redis
from common import API_KEY_ENV, _headers, table
from stacks import inferq_stack

from app.auth.keys import KeyStore
from devstack.processes import CHAT_MODEL, wait_until
from tasks.keyspace import KEYS

TERMINAL = frozenset({"completed", "failed", "cancelled", "expired"})
FLAT_TOLERANCE = 0.10
TIMEOUT = aiohttp.ClientTimeout(total=900)
SAMPLE_PARTS = ("record hash", "events stream", "tombstone", "owner index entry")
#: Ids inside key names, so that keys group into families ("inferq:job:<id>:events").
IDS = [(re.compile(r"job_[0-9a-f]{32}"), "<job>"), (re.compile(r"key_[0-9a-f]{16}"), "<key>"),
       (re.compile(r"[0-9a-f]{64}"), "<digest>"),
       (re.compile(r"(?<=:)\d{5,}$"), "<n>")]  # fmt: skip
#: Seconds without requests before a reading that is compared across the run: Redis shrinks an idle
#: client's query and reply buffers (part of used_memory) in its cron, within a few seconds.
SETTLE_SECONDS = 10


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def memory_parts(client: redis.Redis) -> str:
    """Where used_memory goes besides keys (client buffers, AOF buffer, key tables): a leak or overhead?"""
    stats = client.memory_stats()
    tables = sum(stats.get("db.0", {}).get(f"overhead.hashtable.{t}", 0) for t in ("main", "expires"))
    parts = {"dataset": stats["dataset.bytes"], "clients": stats["clients.normal"], "aof buffer": stats["aof.buffer"],
             "lua": stats["lua.caches"], "key tables": tables}  # fmt: skip
    return "memory stats: " + ", ".join(f"{name} {int(value):,}" for name, value in parts.items())


def job_keys(client: redis.Redis) -> list[bytes]:
    """Every job record and events stream now in Redis (SCAN, never KEYS: it would block the server)."""
    return list(client.scan_iter(match=KEYS.job("*"), count=1000))


def sizes(client: redis.Redis, keys: list[bytes]) -> list[int]:
    """MEMORY USAGE of each key (all elements counted: SAMPLES 0); 0 for a key that is gone."""
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.memory_usage(key, samples=0)
    return [size or 0 for size in pipe.execute()]


def families(client: redis.Redis, top: int = 8) -> str:
    """Keys grouped by name with the ids taken out, largest first: which keys hold the memory."""
    totals: dict[str, list[int]] = {}
    keys = list(client.scan_iter(count=1000))
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        for key, size in zip(chunk, sizes(client, chunk), strict=True):
            name = key.decode(errors="replace")
            for pattern, placeholder in IDS:
                name = pattern.sub(placeholder, name)
            entry = totals.setdefault(name, [0, 0])
            entry[0], entry[1] = entry[0] + 1, entry[1] + size
    ordered = sorted(totals.items(), key=lambda item: -item[1][1])[:top]
    ordered.append(("(all keys)", [len(keys), sum(b for _, b in totals.values())]))
    rows = [(name, f"{n:,}", f"{b:,}", f"{b / max(n, 1):,.0f}") for name, (n, b) in ordered]
    return table(rows, ("key family (MEMORY USAGE)", "keys", "bytes", "bytes/key"))


def breakdown(client: redis.Redis, job_id: str, owner: str) -> dict[str, int]:
    """What one finished job holds, key by key; an owner index entry is the index's size over its members."""
    record, events, tombstone = sizes(client, [KEYS.job(job_id), KEYS.events(job_id), KEYS.tombstone(job_id)])
    index = KEYS.owner_jobs(owner)
    members, listed = client.zcard(index), client.zscore(index, job_id) is not None
    entry = sizes(client, [index])[0] // members if listed and members else 0
    return dict(zip(SAMPLE_PARTS, (record, events, tombstone, entry), strict=True))


class Meter:
    """Counts finished jobs and prints used_memory every `every` of them, with the time since the start."""

    def __init__(self, client: redis.Redis, every: int) -> None:
        self.client, self.every, self.finished, self.started = client, every, 0, time.monotonic()

    def tick(self) -> None:
        self.finished += 1
        if self.finished % self.every == 0:
            self.report(f"{self.finished:,} jobs finished")

    def report(self, label: str) -> int:
        memory = used_memory(self.client)
        print(f"[{time.monotonic() - self.started:7.1f} s] {label:<44} used_memory {memory:>13,}", flush=True)
        return memory


def chat_body(i: int) -> dict:
    return {"model": CHAT_MODEL, "messages": [{"role": "user", "content": f"Say hello to visitor {i}."}],
            "max_tokens": 1, "seed": i}  # fmt: skip


async def post_json(http: aiohttp.ClientSession, path: str, body: dict) -> dict:
    """POST until it is taken: a 429 (a per-key cap) waits as told and retries; any other error is fatal."""
    while True:
        async with http.post(path, json=body) as response:
            payload = await response.json()
            if response.status != 429:
                break
        await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
    if response.status >= 300:
        raise RuntimeError(f"POST {path}: {response.status}: {payload}")
    return payload


async def pool(url: str, concurrency: int, count: int, job: Callable[[aiohttp.ClientSession, int], Awaitable]) -> None:
    """Run job(http, i) for every i below `count` from `concurrency` clients, each one request at a time."""
    indexes, connector = iter(range(count)), aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, headers=_headers(), connector=connector, timeout=TIMEOUT) as http:

        async def client() -> None:
            for i in indexes:
                await job(http, i)

        await asyncio.gather(*(client() for _ in range(concurrency)))


async def sync_phase(url: str, count: int, concurrency: int, meter: Meter) -> str:
    """`count` synchronous chats; returns the job id of the last to finish (a sync reply's id names its job)."""
    last = ""

    async def one(http: aiohttp.ClientSession, i: int) -> None:
        nonlocal last
        payload = await post_json(http, "/v1/chat/completions", chat_body(i))
        last = "job_" + payload["id"].removeprefix("chatcmpl-")
        meter.tick()

    await pool(url, concurrency, count, one)
    return last


async def queued_phase(url: str, count: int, concurrency: int, meter: Meter) -> str:
    """Submit `count` queued chats, then long-poll each until it ends; returns the last job's id."""
    ids, ends = [""] * count, Counter()

    async def submit(http: aiohttp.ClientSession, i: int) -> None:
        ids[i] = (await post_json(http, "/queue/chat/completions", chat_body(i)))["id"]

    async def wait_end(http: aiohttp.ClientSession, i: int) -> None:
        status = ""
        while status not in TERMINAL:
            async with http.get(f"/queue/jobs/{ids[i]}", params={"wait": "30"}) as response:
                job = await response.json()
                if response.status != 200:
                    raise RuntimeError(f"GET /queue/jobs/{ids[i]}: {response.status}: {job}")
            status = job["status"]
        ends[status] += 1
        meter.tick()

    await pool(url, concurrency, count, submit)
    await pool(url, concurrency, count, wait_end)
    print(f"queued jobs ended: {dict(ends)}")
    return ids[-1]


def wait_retention(client: redis.Redis, meter: Meter, timeout: float) -> float:
    """Poll until no job record or events stream is left; says how many when that changed, or every 5 min."""
    started, said = time.monotonic(), [0.0, -1]

    def gone() -> bool:
        left, quiet = len(job_keys(client)), time.monotonic() - said[0]
        if (left != said[1] and quiet >= 30) or quiet >= 300:
            said[:] = [time.monotonic(), left]
            meter.report(f"waiting for retention: {left:,} job keys left")
        return left == 0

    wait_until(gone, timeout, "the job keys to expire", interval=2)
    return time.monotonic() - started


@dataclass
class Phase:
    """One phase of a round: its jobs, how long they took, the memory they added, one sample job."""

    jobs: int
    wall: float
    grew: int
    sample: dict[str, int]

    @property
    def per_job(self) -> float:
        return self.grew / self.jobs if self.jobs else 0.0


def run_phase(name: str, url: str, meter: Meter, args: argparse.Namespace, owner: str) -> Phase:
    """Run one load phase, then print and measure what it left."""
    count, load = (args.sync_jobs, sync_phase) if name == "sync" else (args.queued_jobs, queued_phase)
    before, started = meter.report(f"{name}: {count:,} jobs, {args.concurrency} clients"), time.monotonic()
    sample = asyncio.run(load(url, count, args.concurrency, meter)) if count else ""
    wall = time.monotonic() - started
    time.sleep(SETTLE_SECONDS)
    grew = meter.report(f"{name}: all {count:,} finished ({count / max(wall, 1e-9):.1f} jobs/s)") - before
    print(families(meter.client), flush=True)
    return Phase(count, wall, grew, breakdown(meter.client, sample, owner) if sample else {})


def report(round_: int, sync: Phase, queued: Phase, baseline: int, after: int) -> None:
    """The round's figures side by side, so a before and an after run compare line by line."""

    def both(value: Callable[[Phase], str]) -> tuple[str, str]:
        return value(sync), value(queued)

    total = sync.jobs + queued.jobs
    left = (after - baseline) / total if total else 0.0
    rows = [
        ("jobs", *both(lambda p: f"{p.jobs:,}"), f"{total:,}"),
        ("wall, s", *both(lambda p: f"{p.wall:.1f}"), f"{sync.wall + queued.wall:.1f}"),
        ("jobs/s", *both(lambda p: f"{p.jobs / max(p.wall, 1e-9):.1f}"), ""),
        ("used_memory growth, B", *both(lambda p: f"{p.grew:,}"), f"{sync.grew + queued.grew:,}"),
        ("retained per finished job, B", *both(lambda p: f"{p.per_job:,.0f}"), ""),
        *[(f"  sample {key}, B", *both(lambda p, k=key: f"{p.sample.get(k, 0):,}"), "") for key in SAMPLE_PARTS],
        ("left per job after retention, B", "", "", f"{left:,.0f}"),
    ]
    print(f"\nround {round_}: baseline used_memory {baseline:,} B, after retention {after:,} B")
    print(table(rows, ("", "sync", "queued", "all")))


def flat_verdict(baseline: int, afters: list[int]) -> str:
    """Flat: the last value after retention is within 10 % of the baseline, or of the first round's value."""
    last = afters[-1]
    references = [("baseline", baseline)] + ([("round 1 after retention", afters[0])] if len(afters) > 1 else [])
    parts = [f"{last / ref - 1:+.1%} vs {name}" for name, ref in references]
    flat = any(abs(last / ref - 1) <= FLAT_TOLERANCE for _, ref in references)
    return f"memory flat after retention: {'YES' if flat else 'NO'} ({', '.join(parts)}; tolerance 10 %)"


def soak(args: argparse.Namespace) -> None:
    retention = str(args.retention)
    env = {"INFERQ_JOB_RETENTION_SECONDS": retention, "INFERQ_SYNC_RETENTION_SECONDS": retention,
           "INFERQ_MAX_OPEN_JOBS_PER_KEY": str(args.queued_jobs + args.concurrency)}  # fmt: skip
    with inferq_stack(**env) as stack:
        client = stack.redis.client()
        owner = KeyStore(client).authenticate(os.environ[API_KEY_ENV])["id"]
        meter = Meter(client, args.every)
        asyncio.run(sync_phase(stack.url, args.concurrency, args.concurrency, Meter(client, 1 << 30)))
        time.sleep(SETTLE_SECONDS)
        baseline = used_memory(client) - sum(sizes(client, job_keys(client)))
        print(f"baseline used_memory (after warm-up, less the warm-up jobs' keys): {baseline:,}", flush=True)
        print(f"  {memory_parts(client)}")
        afters: list[int] = []
        for round_ in range(1, args.rounds + 1):
            loaded = time.monotonic()
            sync = run_phase("sync", stack.url, meter, args, owner)
            queued = run_phase("queued", stack.url, meter, args, owner)
            if time.monotonic() - loaded > args.retention:
                print(f"WARNING: the load outlasted --retention {args.retention} s: jobs expired during it, "
                      "so the per-job figures undercount")  # fmt: skip
            waited = wait_retention(client, meter, args.retention * 2 + 120)
            afters.append(meter.report(f"round {round_}: job keys gone after {waited:.0f} s"))
            print(f"  {memory_parts(client)}")
            print(families(client))
            report(round_, sync, queued, baseline, afters[-1])
        print(flat_verdict(baseline, afters))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync-jobs", type=int, default=20_000)
    parser.add_argument("--queued-jobs", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--retention", type=int, default=120, help="both retention settings (s); longer than the load")
    parser.add_argument("--rounds", type=int, default=1, help="load + retention cycles")
    parser.add_argument("--every", type=int, default=2_000, help="print used_memory every this many jobs")
    args = parser.parse_args()
    command, started = shlex.join([sys.executable, *sys.argv]), time.monotonic()
    print(f"command: {command}", flush=True)
    soak(args)
    print(f"\nrun time {time.monotonic() - started:.0f} s\ncommand: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

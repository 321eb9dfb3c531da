"""Which thread of inferq's API and worker processes spends the CPU, per request.

bench_cpu counts each process; this splits the worker's main process (and
the API worker) by thread: Celery's consumer (the main thread), the vLLM
client's event loop, the task threads, and each background loop. Each
thread's user + system time is read from /proc (psutil) before and after
`--rounds` loads of `--requests` concurrent non-streamed chat requests;
thread names come from `py-spy dump` (Python 3.11 does not give its thread
names to the OS), so `make bench` installs py-spy. Background loops wake on
a clock, not per request: their share per request falls as the load grows.

    .venv/bin/python bench/bench_threads.py [--requests 64] [--tokens 64] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import psutil
from common import concurrent, table  # bench/ is on sys.path
from stacks import inferq_stack

from devstack.processes import CHAT_MODEL

PROMPT = [{"role": "user", "content": "Write a short poem about the sea."}]


def thread_cpu(pid: int) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def thread_names(pid: int) -> dict[int, str]:
    """OS thread id -> Python thread name, numbered pool threads folded into one name."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, check=True).stdout
    return {
        int(tid): re.sub(r"[-_]?\d+(_\d+)?$", "", name)
        for tid, name in re.findall(r'Thread (\d+) \([^)]*\): "([^"]*)"', out)
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    bodies = [
        {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": args.tokens, "ignore_eos": True, "seed": i}
        for i in range(args.requests)
    ]
    with inferq_stack() as stack:
        asyncio.run(concurrent(stack.url, bodies))  # warm-up: every thread exists and every path ran
        processes = {"API": psutil.Process(stack.api.process.pid).children()[0].pid, "worker": stack.worker.process.pid}
        before = {name: thread_cpu(pid) for name, pid in processes.items()}
        for _ in range(args.rounds):
            asyncio.run(concurrent(stack.url, bodies))
        after = {name: thread_cpu(pid) for name, pid in processes.items()}
        names = {name: thread_names(pid) for name, pid in processes.items()}
    requests = args.requests * args.rounds
    rows = []
    for process in processes:
        spent: Counter[str] = Counter()
        for tid, seconds in after[process].items():
            name = names[process].get(tid) or ("MainThread" if tid == processes[process] else "(unnamed)")
            spent[name] += seconds - before[process].get(tid, 0.0)
        rows.append((process, "all threads", f"{1000 * sum(spent.values()) / requests:.2f}"))
        rows += [(process, thread, f"{1000 * s / requests:.2f}") for thread, s in spent.most_common() if s > 0]
    load = f"{args.requests} concurrent non-streamed chat requests x {args.tokens} tokens"
    print(f"{load}, {args.rounds} rounds, {CHAT_MODEL}")
    print(table(rows, ("process", "thread", "CPU ms/request")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

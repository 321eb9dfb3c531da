"""Before/after: inferq from two checkouts, alternating, at the same concurrencies.

Each round starts a fresh inferq stack from one checkout, then from the
other (same engine, same load as bench_curves: non-streamed throughput and
streamed TTFT), for `--rounds` rounds; medians per checkout and their ratio
are printed. Use it for a before/after claim on a machine whose speed drifts
between rounds: the two checkouts meet the same drift.

With `--cpu` each round is bench_cpu's inferq side instead: the CPU each
process spends per request (API, Redis, the worker, the engine) under
`--requests` concurrent chat requests of `--tokens` tokens, or embedding
requests of `--inputs` inputs with `--embeddings`. CPU is the steadier
measure, and pairing the two trees round by round cancels most of the
machine's drift.

The load comes from this checkout's bench/ for both trees, so both meet the
same program; each tree's own code (app, tasks, workers, devstack) serves it.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/bench_trees.py --before /tmp/before [--levels 16,64] [--rounds 3]
    .venv/bin/python bench/bench_trees.py --before /tmp/before --cpu [--requests 64] [--tokens 64]
                                          [--embeddings [--inputs 1]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from common import table  # bench/ is on sys.path

HERE = Path(__file__).resolve().parent
# The tree's own packages are imported first: bench/common.py puts this checkout's root
# first on sys.path, and a package already imported is not looked for again.
PRELUDE = """
import argparse, json, sys
sys.path.insert(0, {tree!r})
import app, devstack.processes, tasks
sys.path.insert(0, {bench!r})
"""

ONE_ROUND = (
    PRELUDE
    + """
import bench_curves
from stacks import inferq_stack
args = argparse.Namespace(tokens=32, stream_tokens=8, single=4, api_workers=1, rounds=1)
with inferq_stack() as stack:
    bench_curves.measure(stack.url, 8, argparse.Namespace(**{{**vars(args), "tokens": 8, "stream_tokens": 4}}))
    points = {{level: vars(bench_curves.measure(stack.url, level, args)) for level in {levels!r}}}
print(json.dumps(points))
"""
)

CPU_ROUND = (
    PRELUDE
    + """
import bench_cpu
args = argparse.Namespace(**{options!r})
with bench_cpu.inferq_parts(args) as (url, parts):
    print(json.dumps(bench_cpu.measure(url, parts, args)))
"""
)


def run_in(tree: Path, code: str) -> dict:
    """Run `code` against `tree` (its code, its bench helpers) in a process of its own; its last line's JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def one_round(tree: Path, levels: list[int]) -> dict[int, dict[str, float]]:
    points = run_in(tree, ONE_ROUND.format(tree=str(tree), bench=str(HERE), levels=levels))
    return {int(level): point for level, point in points.items()}


def cpu_round(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    options = {"requests": args.requests, "tokens": args.tokens, "stream": False, "embeddings": args.embeddings}
    options["inputs"] = args.inputs
    return run_in(tree, CPU_ROUND.format(tree=str(tree), bench=str(HERE), options={**options, "api_workers": 1}))


def cpu_rows(runs: dict[str, list[dict[str, float]]], rate: str) -> list[tuple[str, ...]]:
    rows = []
    for metric in ("tok/s", *(f"{role} ms/request" for role in ("API", "Redis", "worker", "not engine", "engine"))):
        before = statistics.median(run[metric] for run in runs["before"])
        after = statistics.median(run[metric] for run in runs["after"])
        rows.append((rate if metric == "tok/s" else metric, f"{before:.3f}", f"{after:.3f}", f"{after / before:.2f}x"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (a git worktree)")
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--levels", type=lambda s: [int(c) for c in s.split(",")], default=[16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpu", action="store_true", help="CPU per request by process (bench_cpu) instead")
    parser.add_argument("--requests", type=int, default=64, help="with --cpu")
    parser.add_argument("--tokens", type=int, default=64, help="with --cpu")
    parser.add_argument("--embeddings", action="store_true", help="with --cpu: embedding requests")
    parser.add_argument("--inputs", type=int, default=1, help="with --embeddings: inputs per request")
    args = parser.parse_args()
    runs: dict[str, list] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        for name in ("before", "after"):
            tree = getattr(args, name).resolve()
            runs[name].append(cpu_round(tree, args) if args.cpu else one_round(tree, args.levels))
            print(f"round {round_ + 1} {name}: {runs[name][-1]}", flush=True)
    if args.cpu:
        load = f"{args.inputs}-input embedding" if args.embeddings else f"chat ({args.tokens} tokens)"
        print(
            f"before {args.before}, after {args.after}; {args.requests} concurrent {load} requests; "
            f"medians of {args.rounds} alternating rounds"
        )
        rate = "embeddings/s" if args.embeddings else "output tok/s"
        print(table(cpu_rows(runs, rate), ("metric", "before", "after", "after/before")))
        return 0
    rows = []
    for level in args.levels:
        for metric, unit, scale in (("throughput", "tok/s", 1), ("ttft_p50", "ms", 1000)):
            before = statistics.median(run[level][metric] for run in runs["before"]) * scale
            after = statistics.median(run[level][metric] for run in runs["after"]) * scale
            rows.append((f"c={level} {metric} ({unit})", f"{before:.1f}", f"{after:.1f}", f"{after / before:.2f}x"))
    print(f"before {args.before}, after {args.after}; medians of {args.rounds} alternating rounds")
    print(table(rows, ("metric", "before", "after", "after/before")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

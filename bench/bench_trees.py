"""Before/after: inferq from two checkouts, alternating, at the same concurrencies.

Each round starts a fresh inferq stack from one checkout, then from the
other (same engine, same load as bench_curves: non-streamed throughput and
streamed TTFT), for `--rounds` rounds; medians per checkout and their ratio
are printed. Use it for a before/after claim on a machine whose speed drifts
between rounds: the two checkouts meet the same drift.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/bench_trees.py --before /tmp/before [--levels 16,64] [--rounds 3]
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
ONE_ROUND = """
import argparse, json, sys
sys.path.insert(0, {bench!r})
import bench_curves
from stacks import inferq_stack
args = argparse.Namespace(tokens=32, stream_tokens=8, single=4, api_workers=1, rounds=1)
with inferq_stack() as stack:
    bench_curves.measure(stack.url, 8, argparse.Namespace(**{{**vars(args), "tokens": 8, "stream_tokens": 4}}))
    points = {{level: vars(bench_curves.measure(stack.url, level, args)) for level in {levels!r}}}
print(json.dumps(points))
"""


def one_round(tree: Path, levels: list[int]) -> dict[int, dict[str, float]]:
    """One stack from `tree` (its code, its bench helpers), in a process of its own."""
    code = ONE_ROUND.format(bench=str(tree / "bench"), levels=levels)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True, check=True)
    return {int(level): point for level, point in json.loads(out.stdout.splitlines()[-1]).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout (a git worktree)")
    parser.add_argument("--after", type=Path, default=HERE.parent)
    parser.add_argument("--levels", type=lambda s: [int(c) for c in s.split(",")], default=[16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict[int, dict[str, float]]]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        for name in ("before", "after"):
            runs[name].append(one_round(getattr(args, name).resolve(), args.levels))
            print(f"round {round_ + 1} {name}: {runs[name][-1]}", flush=True)
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

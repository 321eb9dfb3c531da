"""vLLM's own load tool, `vllm bench serve`, against inferq and against `vllm serve`, side by side.

The same command (random prompts, fixed output length with --ignore-eos,
the same concurrency) runs against both stacks, which bench/stacks.py starts
the same way every time with the same engine settings, one after the other
(never both at once: two cores). It prints request throughput, output tok/s,
median TTFT and TPOT, and inferq/vllm ratios. A program, not a test: nothing
here fails on a timing.

    .venv/bin/python bench/bench_load_tool.py [--num-prompts 64] [--max-concurrency 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from common import API_KEY_ENV, table
from stacks import inferq_stack, vllm_serve

from devstack.processes import CHAT_MODEL
from devstack.vllm_bench import BACKENDS, BenchSettings, run_vllm_bench
from tasks.settings import Settings

#: (label, result key, format) of each figure printed per backend.
FIGURES = (
    ("request throughput (req/s)", "request_throughput", "{:.2f}"),
    ("output throughput (tok/s)", "output_throughput", "{:.1f}"),
    ("median TTFT (ms)", "median_ttft_ms", "{:.0f}"),
    ("median TPOT (ms)", "median_tpot_ms", "{:.1f}"),
)


def run_all(url: str, api_key: str | None, backends: list[str], settings: BenchSettings) -> dict[str, dict]:
    tokenizer = Settings.load().models[CHAT_MODEL].local_path
    return {backend: run_vllm_bench(url, backend, CHAT_MODEL, tokenizer, api_key, settings) for backend in backends}


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x" if theirs else "n/a"


def rows_for(backend: str, ours: dict[str, Any], theirs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """One table block: failures first (a figure over failed requests means nothing), then the figures."""
    rows = [(f"{backend}: failed requests", str(ours["failed"]), str(theirs["failed"]), "")]
    if not (ours["completed"] and theirs["completed"]):
        return rows
    for label, key, fmt in FIGURES:
        a, b = ours[key], theirs[key]
        rows.append((f"{backend}: {label}", fmt.format(a), fmt.format(b), ratio(a, b)))
    return rows


def first_error(result: dict[str, Any]) -> str | None:
    """The last line of the first failed request's error (only kept with --save-detailed)."""
    errors = [error for error in result.get("errors", []) if error]
    return errors[0].strip().splitlines()[-1] if errors else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-prompts", type=int, default=64)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--input-len", type=int, default=128, help="random prompt tokens")
    parser.add_argument("--output-len", type=int, default=64, help="generated tokens per request (--ignore-eos)")
    parser.add_argument("--backend", choices=list(BACKENDS), action="append", help="default: both")
    parser.add_argument("--api-workers", type=int, default=2, help="gunicorn worker processes (the default deployment)")
    args = parser.parse_args()
    backends = args.backend or list(BACKENDS)
    settings = BenchSettings(args.num_prompts, args.max_concurrency, args.input_len, args.output_len)
    started = time.time()
    with inferq_stack(api_workers=args.api_workers) as stack:
        ours = run_all(stack.url, os.environ[API_KEY_ENV], backends, settings)
    with vllm_serve() as url:
        theirs = run_all(url, None, backends, settings)

    print(
        f"\nvllm bench serve: model {CHAT_MODEL}, {settings.num_prompts} random prompts of {settings.input_len} "
        f"tokens, {settings.output_len} output tokens each, concurrency {settings.max_concurrency}, "
        f"{os.cpu_count()} CPUs"
    )
    rows = [row for backend in backends for row in rows_for(backend, ours[backend], theirs[backend])]
    print(table(rows, ("metric", "inferq", "vllm serve", "inferq/vllm")))
    for backend in backends:
        for name, result in (("inferq", ours[backend]), ("vllm serve", theirs[backend])):
            if result["failed"]:
                print(f"{backend} on {name}: first error: {first_error(result)}")
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Constrained decoding: a json_schema chat vs the same chat unconstrained, inferq vs `vllm serve`, one run.

Every request generates exactly `--tokens` tokens: the unconstrained one with
`ignore_eos`, the constrained one because its schema (an array of at least 50
records) cannot close before max_tokens cuts it. So tokens/s compare the same
amount of work with and without the grammar's per-token mask. Also measured:
a 1-token request's latency unconstrained, with a schema the engine has seen,
and with a schema it has never seen (the grammar's set-up cost, the part a
per-schema cache would save). inferq runs first, then `vllm serve` with the
same engine options (the same grammar backend included); never both at once.

    .venv/bin/python bench/bench_structured.py [--requests 32] [--tokens 64]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time

from common import Run, concurrent, sequential, table  # bench/ is on sys.path
from stacks import inferq_stack, vllm_serve

from devstack.processes import CHAT_MODEL
from workers.structured import ENGINE_CONFIG

PROMPT = [{"role": "user", "content": "List people with their name, age and city, as JSON."}]
RECORD = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 12},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 12},
    },
    "required": ["name", "age", "city"],
}
PEOPLE = {"type": "array", "items": RECORD, "minItems": 50}


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "people", "schema": schema, "strict": True}}


def fresh_schema(i: int) -> dict:
    """A schema no request used before (a property name of its own), so the backend sets up a new grammar."""
    record = {**RECORD, "properties": {**RECORD["properties"], f"field_{i}_{time.time_ns()}": {"type": "boolean"}}}
    return {"type": "array", "items": record, "minItems": 50}


def grammar_costs(rounds: int = 10) -> str:
    """Each backend's set-up for a schema it has not seen, and llguidance's mask per token, in this process."""
    import json
    import statistics

    import llguidance
    import llguidance.hf
    import llguidance.torch
    import xgrammar
    from transformers import AutoTokenizer

    from tasks.settings import Settings

    tokenizer = AutoTokenizer.from_pretrained(Settings.load().models[CHAT_MODEL].tokenizer_path)
    ll_tokenizer = llguidance.hf.from_tokenizer(tokenizer, len(tokenizer))
    mask = llguidance.torch.allocate_token_bitmask(1, ll_tokenizer.vocab_size)
    compiler = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer)))
    compiler.compile_json_schema(json.dumps(PEOPLE), any_whitespace=False)  # its first compile warms it up
    tokens = tokenizer.encode('[{"name":"Ann","age":31,"city":"Oslo"},{"name":"Bo"', add_special_tokens=False)
    setup, steps, compiled, cached = [], [], [], []
    for i in range(rounds):
        schema = fresh_schema(i)
        started = time.perf_counter()
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema, defaults={"whitespace_flexible": False})
        matcher = llguidance.LLMatcher(ll_tokenizer, grammar)
        setup.append(time.perf_counter() - started)
        for token in tokens:
            started = time.perf_counter()
            llguidance.torch.fill_next_token_bitmask(matcher, mask, 0)
            steps.append(time.perf_counter() - started)
            matcher.consume_token(token)
        for bucket in (compiled, cached):
            started = time.perf_counter()
            compiler.compile_json_schema(json.dumps(schema), any_whitespace=False)
            bucket.append(time.perf_counter() - started)
    ms = lambda values: f"{statistics.median(values) * 1000:.2f} ms"  # noqa: E731
    return (
        f"grammar set-up for a new schema (median of {rounds}): llguidance {ms(setup)}, "
        f"xgrammar compile {ms(compiled)} (cached: {ms(cached)}); llguidance mask per token per sequence {ms(steps)}"
    )


def _median_run(runs: list[Run]) -> Run:
    """The round with the median throughput (rounds alternate, so load drifting on a shared machine hits both)."""
    return sorted(runs, key=lambda run: run.throughput)[len(runs) // 2]


def measure(url: str, requests_: int, tokens: int, single: int, rounds: int) -> dict[str, Run]:
    free = {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": tokens, "ignore_eos": True, "temperature": 0.8}
    bound = {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": tokens, "temperature": 0.8}
    bound["response_format"] = schema_format(PEOPLE)
    one = {"model": CHAT_MODEL, "messages": PROMPT, "max_tokens": 1, "temperature": 0}
    asyncio.run(concurrent(url, [dict(free, seed=i) for i in range(4)] + [dict(bound, seed=i) for i in range(4)]))
    frees, bounds = [], []
    for _ in range(rounds):
        frees.append(asyncio.run(concurrent(url, [dict(free, seed=i) for i in range(requests_)])))
        bounds.append(asyncio.run(concurrent(url, [dict(bound, seed=i) for i in range(requests_)])))
    runs = {
        "free": _median_run(frees),
        "bound": _median_run(bounds),
        "one_free": asyncio.run(sequential(url, one, single)),
        "one_seen": asyncio.run(sequential(url, {**one, "response_format": schema_format(PEOPLE)}, single)),
    }
    fresh = [
        asyncio.run(sequential(url, {**one, "response_format": schema_format(fresh_schema(i))}, 1))
        for i in range(single)
    ]
    runs["one_new"] = Run([r.latencies[0] for r in fresh], sum(r.tokens for r in fresh), sum(r.wall for r in fresh))
    return runs


def load() -> str:
    return "load average " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def report(ours: dict[str, Run], theirs: dict[str, Run], args) -> str:
    ms = lambda s: f"{s * 1000:.1f} ms"  # noqa: E731
    rate = lambda v: f"{v:.1f}"  # noqa: E731
    rows = []
    for label, key, attr, fmt in [
        (
            f"{args.requests} concurrent, unconstrained, output tok/s (median of {args.rounds})",
            "free",
            "throughput",
            rate,
        ),
        (
            f"{args.requests} concurrent, json_schema, output tok/s (median of {args.rounds})",
            "bound",
            "throughput",
            rate,
        ),
        ("1-token request, unconstrained, p50", "one_free", "p50", ms),
        ("1-token request, schema seen before, p50", "one_seen", "p50", ms),
        ("1-token request, schema never seen, p50", "one_new", "p50", ms),
    ]:
        a, b = getattr(ours[key], attr), getattr(theirs[key], attr)
        rows.append((label, fmt(a), fmt(b), f"{a / b:.2f}x"))
    cost = lambda r: r["bound"].throughput / r["free"].throughput  # noqa: E731
    lines = [
        f"model {CHAT_MODEL}, {args.tokens} output tokens per request, grammar backend {ENGINE_CONFIG['backend']}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}",
        table(rows, ("metric", "inferq", "vllm serve", "inferq/vllm")),
        "",
        f"json_schema throughput vs unconstrained: inferq {cost(ours):.2f}x, vllm serve {cost(theirs):.2f}x",
        f"tokens generated: inferq free {ours['free'].tokens}, json_schema {ours['bound'].tokens}; "
        f"vllm serve free {theirs['free'].tokens}, json_schema {theirs['bound'].tokens}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--single", type=int, default=10, help="sequential 1-token requests per case")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each concurrent case (median)")
    args = parser.parse_args()
    started = time.time()
    loads = [load()]
    with inferq_stack() as stack:
        ours = measure(stack.url, args.requests, args.tokens, args.single, args.rounds)
    loads.append(load())
    with vllm_serve() as url:
        theirs = measure(url, args.requests, args.tokens, args.single, args.rounds)
    loads.append(load())
    print(report(ours, theirs, args))
    print("machine: " + " -> ".join(loads) + " (before inferq, between, after vllm serve)")
    print(grammar_costs())
    print(f"(benchmark took {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

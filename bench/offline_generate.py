"""The engine alone: vLLM's offline `LLM.generate` on the given token prompts, with the
same engine settings inferq's worker uses. Prints one JSON line: tokens and seconds.

Run by bench_queue.py as a separate process (vLLM starts its engine core as a
child process, which needs this module's __main__ guard).
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    job = json.load(sys.stdin)
    from vllm import LLM, SamplingParams

    sys.path.insert(0, job["repo"])
    from tasks.settings import Settings

    spec = Settings.load().models[job["model"]]
    options = spec.engine_options("cpu")  # the same engine a CPU worker runs
    llm = LLM(**options)
    prompts = [{"prompt_token_ids": ids} for ids in job["prompts"]]
    params = [SamplingParams(max_tokens=job["max_tokens"], ignore_eos=True, seed=seed) for seed in job["seeds"]]
    llm.generate(prompts[:8], params[:8], use_tqdm=False)  # warm up, as inferq's worker is warm
    started = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    print("RESULT " + json.dumps({"tokens": tokens, "seconds": wall}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

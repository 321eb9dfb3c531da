"""float32 vs bfloat16 on the CPU build: throughput, and whether a seed's text survives batching.

inferq promises that a request with a `seed` gets the same text whatever
else the engine runs beside it. For each engine setting (the models file's
CPU options with `dtype` float32, bfloat16, and bfloat16 with vLLM's
batch-invariant mode) one child process runs vLLM's offline engine: 64
seeded prompts at once (output tok/s, median of `--rounds` runs), then each
of 8 of them alone; a prompt whose text alone differs from its text in the
batch breaks the promise.

    .venv/bin/python bench/bench_precision.py [--rounds 3] [--tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from common import table  # bench/ is on sys.path

from devstack.processes import CHAT_MODEL, REPO

SETTINGS = {
    "float32": ({"dtype": "float32"}, {}),
    "bfloat16": ({"dtype": "bfloat16"}, {}),
    "bfloat16, batch-invariant": ({"dtype": "bfloat16"}, {"VLLM_BATCH_INVARIANT": "1"}),
}


def child(job: dict) -> None:
    """In the child: the engine, the batch runs, the lone runs; one RESULT line."""
    from vllm import LLM, SamplingParams

    sys.path.insert(0, job["repo"])
    from tasks.settings import Settings

    options = Settings.load().models[job["model"]].engine_options("cpu") | job["options"]
    llm = LLM(**options)
    prompts = [{"prompt": f"Tell me something about the number {i}."} for i in range(64)]
    params = [SamplingParams(max_tokens=job["tokens"], ignore_eos=True, seed=i, temperature=0.8) for i in range(64)]
    llm.generate(prompts[:8], params[:8], use_tqdm=False)  # warm up
    rates, texts = [], []
    for _ in range(job["rounds"]):
        started = time.perf_counter()
        outputs = llm.generate(prompts, params, use_tqdm=False)
        rates.append(sum(len(o.outputs[0].token_ids) for o in outputs) / (time.perf_counter() - started))
        texts = [o.outputs[0].text for o in outputs]
    alone = [llm.generate([prompts[i]], [params[i]], use_tqdm=False)[0].outputs[0].text for i in range(8)]
    changed = sum(a != b for a, b in zip(alone, texts[:8], strict=True))
    print("RESULT " + json.dumps({"rates": rates, "changed": changed}), flush=True)


def run(name: str, args) -> dict:
    options, env = SETTINGS[name]
    job = {"repo": str(REPO), "model": CHAT_MODEL, "options": options, "tokens": args.tokens, "rounds": args.rounds}
    done = subprocess.run(
        [sys.executable, __file__, "--child"], input=json.dumps(job), capture_output=True, text=True,
        env={**os.environ, **env, "VLLM_CPU_KVCACHE_SPACE": "1"},
    )  # fmt: skip
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if line is None:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:70]}
    return json.loads(line.removeprefix("RESULT "))


def main() -> int:
    if "--child" in sys.argv:
        child(json.load(sys.stdin))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=32)
    args = parser.parse_args()
    began = time.time()
    results = {name: run(name, args) for name in SETTINGS}
    base = statistics.median(results["float32"]["rates"])
    rows = []
    for name, result in results.items():
        if "error" in result:
            rows.append((name, "did not run", "", result["error"]))
            continue
        rate = statistics.median(result["rates"])
        rows.append((name, f"{rate:.1f}", f"{rate / base:.2f}x", f"{result['changed']} of 8"))
    print(f"model {CHAT_MODEL}, 64 seeded prompts x {args.tokens} tokens, offline engine, {os.cpu_count()} CPUs; "
          f"median of {args.rounds} runs")  # fmt: skip
    print(table(rows, ("engine setting", "output tok/s", "vs float32", "seeds whose text changed alone")))
    print(f"(benchmark took {time.time() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The two systems the benchmarks compare, started the same way every time.

`inferq_stack` runs the real thing (redis-server, one model worker, gunicorn)
on loopback; `vllm_serve` runs vLLM's own OpenAI server on the same model with
the same engine settings from config/models.yaml. Never both at once: the
machine has two cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import common  # noqa: F401 - puts the repository on sys.path
import requests
from common import API_KEY_ENV

from app.auth.keys import KeyStore
from devstack.processes import (
    ARTIFACTS,
    CHAT_MODEL,
    ApiServer,
    RedisServer,
    ServiceEnv,
    WorkerProcess,
    free_port,
    temp_dir,
    wait_until,
    write_models_file,
)
from tasks.settings import Settings


@dataclass
class InferqStack:
    url: str
    redis: RedisServer
    api: ApiServer
    worker: WorkerProcess | None
    env: ServiceEnv | None = None


@contextmanager
def inferq_stack(
    api_workers: int = 1, with_worker: bool = True, model: str = CHAT_MODEL, **env: str
) -> Iterator[InferqStack]:
    directory = temp_dir("inferq-bench-")
    redis_server = RedisServer(directory / "redis").start()
    # One benchmark key stands for many callers: lift the per-key cap on waiting requests (64).
    env = {"INFERQ_MAX_WAITING_PER_KEY": "100000", **env}
    service_env = ServiceEnv(redis_server.url, write_models_file(directory), **env)
    os.environ[API_KEY_ENV], _ = KeyStore(redis_server.client()).create(name="bench", rpm=1_000_000)
    worker = WorkerProcess(service_env, model=model, log_name="bench-worker.log").start() if with_worker else None
    api = ApiServer(service_env, workers=api_workers).start()
    try:
        yield InferqStack(api.url, redis_server, api, worker, service_env)
    finally:
        api.stop()
        if worker is not None:
            worker.stop()
        redis_server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def vllm_serve_command(port: int, model: str = CHAT_MODEL) -> list[str]:
    """vLLM's own server with the engine options an inferq CPU worker uses (the models file's cpu block)."""
    spec = Settings.load().models[model]
    options = spec.engine_options("cpu")
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", options["model"],
        "--served-model-name", model, "--dtype", options["dtype"], "--max-model-len", str(spec.max_model_len),
        "--max-num-seqs", str(options["max_num_seqs"]), "--host", "127.0.0.1", "--port", str(port),
        "--disable-log-stats", "--seed", str(options["seed"]),
    ]  # fmt: skip
    if "runner" in options:
        command += ["--runner", options["runner"]]
    if options.get("enforce_eager"):
        command.append("--enforce-eager")
    if options.get("enable_chunked_prefill") is False:
        command.append("--no-enable-chunked-prefill")
    if "kv_cache_memory_bytes" in options:
        command += ["--kv-cache-memory-bytes", str(options["kv_cache_memory_bytes"])]
    if "structured_outputs_config" in options:  # the same grammar backend and options as a worker's
        command += ["--structured-outputs-config", json.dumps(options["structured_outputs_config"])]
    return command


@contextmanager
def vllm_serve(model: str = CHAT_MODEL) -> Iterator[str]:
    port = free_port()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "bench-vllm-serve.log", "wb")  # noqa: SIM115 - the server's whole life
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    process = subprocess.Popen(
        vllm_serve_command(port, model), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: requests.get(url + "/health", timeout=2).ok, 600, "vllm serve", process=process)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)

"""A worker whose engine cannot start must exit, not consume jobs it would only fail."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import REPO, ServiceEnv, write_models_file

BROKEN = {"id": "broken-model", "kind": "generate", "path": "/nonexistent/model", "max_model_len": 256,
          "dtype": "float32", "max_concurrency": 2, "engine": {"enforce_eager": True}}  # fmt: skip


def test_worker_exits_when_its_engine_fails(session_dir, redis_server):
    directory = session_dir / "broken"
    directory.mkdir()
    env = ServiceEnv(redis_server.url, write_models_file(directory, extra=[BROKEN]))
    client = redis_server.client()
    client.lpush("model.broken-model", b"not a real message")  # something it must not take
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "worker", "--model", "broken-model"],
        cwd=REPO, env=env.vars, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "did not start" in done.stderr + done.stdout
    assert client.llen("model.broken-model") == 1, "a worker without an engine consumed the queue"
    assert client.zcard("inferq:workers:broken-model") == 0, "it must never have announced itself live"

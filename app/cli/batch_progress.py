"""The live progress of one batch: a bar with counts, rate and ETA, and Ctrl-C offering to cancel.

Drawn with `rich` when the output is a terminal (and as plain lines when it
is not, so a log stays readable). The rate is finished requests per second
since the batch started running here; the ETA follows from it.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import click

TERMINAL = ("completed", "failed", "expired", "cancelled")


def _bar() -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.fields[status]:<11}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TextColumn("{task.fields[rate]:>6.1f} req/s"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )


def watch(client: Any, batch: Any, poll: float) -> Any:
    """Poll until the batch ends; return its last state.

    Ctrl-C only raises a flag (a SIGINT handler for the watch's duration), so
    it is seen after the current poll wherever it lands: a KeyboardInterrupt
    raised inside rich's redraw or the SDK's call would end the program
    without the offer to cancel.
    """
    progress, started, interrupted = _bar(), time.monotonic(), threading.Event()
    counts = batch.request_counts
    task = progress.add_task("batch", total=counts.total if counts else None, status=batch.status, failed=0, rate=0.0)
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    try:
        with progress:
            while batch.status not in TERMINAL:
                if interrupted.wait(poll):
                    interrupted.clear()
                    progress.stop()
                    batch = _interrupted(client, batch, previous)
                    progress.start()
                else:
                    batch = client.batches.retrieve(batch.id)
                _draw(progress, task, batch, started)
    finally:
        signal.signal(signal.SIGINT, previous)
    return batch


def _draw(progress: Any, task: Any, batch: Any, started: float) -> None:
    counts = batch.request_counts
    done = counts.completed + counts.failed if counts else 0
    progress.update(
        task,
        total=counts.total if counts else None,
        completed=done,
        status=batch.status,
        failed=counts.failed if counts else 0,
        rate=done / max(time.monotonic() - started, 1e-6),
    )


def _interrupted(client: Any, batch: Any, handler: Any) -> Any:
    """Ask whether to cancel; a second Ctrl-C at the question ends the program as usual."""
    ours = signal.signal(signal.SIGINT, handler)
    try:
        if click.confirm(f"\nCancel batch {batch.id}? (what finished is kept)", default=True):
            return client.batches.cancel(batch.id)
    finally:
        signal.signal(signal.SIGINT, ours)
    raise click.ClickException(f"left batch {batch.id} running; `inferq batch status {batch.id}` shows it")

"""The chaos stack fixture, and the one table the chaos level prints at the end of any run that reached it."""

from __future__ import annotations

import pytest

from tests.chaos.stack import LEDGER, ChaosStack

COLUMNS = ("accepted", "completed", "failed", "cancelled", "lost", "duplicated")


@pytest.fixture(scope="module")
def stack(session_dir):
    """One stack for every fault of the module: worker starts are what the chaos level's time goes on."""
    chaos = ChaosStack(session_dir / "chaos")
    yield chaos
    chaos.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Fault x jobs, printed without -s: what each fault did to the jobs its key had accepted."""
    if not LEDGER:
        return
    width = max(len(books.fault) for books in LEDGER)
    terminalreporter.write_sep("=", "chaos: every accepted job, per fault")
    header = f"{'fault':<{width}}  " + "  ".join(f"{c:>10}" for c in COLUMNS) + f"  {'billing':>8}  {'seconds':>7}"
    terminalreporter.write_line(header)
    for books in LEDGER:
        counts = (
            books.accepted,
            books.completed,
            books.failed,
            books.cancelled,
            len(books.lost),
            len(books.duplicated),
        )
        billing = "=" if books.stored == books.billed else "DIFFERS"
        cells = "  ".join(f"{n:>10}" for n in counts)
        terminalreporter.write_line(f"{books.fault:<{width}}  {cells}  {billing:>8}  {books.seconds:>7.0f}")

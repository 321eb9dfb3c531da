"""Jobs: their records, their Lua steps and the one service that changes them (see service.py)."""

from tasks.jobs.attempts import Superseded
from tasks.jobs.policy import Policy
from tasks.jobs.record import DEFAULT_PRIORITY, STATUSES, TERMINAL, Claim, Idempotency, Job
from tasks.jobs.service import JobService
from tasks.jobs.submission import ALREADY_ENDED, CANCELLED_QUEUED, CANCELLED_RUNNING, NOT_FOUND

__all__ = [
    "ALREADY_ENDED",
    "CANCELLED_QUEUED",
    "CANCELLED_RUNNING",
    "DEFAULT_PRIORITY",
    "NOT_FOUND",
    "STATUSES",
    "TERMINAL",
    "Claim",
    "Idempotency",
    "Job",
    "JobService",
    "Policy",
    "Superseded",
]

"""Batches: OpenAI's Batch API on the job queue.

A batch's input lines are validated in the API (app.batch_input) into a
prepared file of typed requests; the batch runner (tasks.batches.runner),
which runs beside the reconciler in every worker and takes turns through a
Redis lock, feeds them to the model queues as ordinary jobs in windows, at a
priority below interactive work, harvests the ended jobs into chunk files,
and writes the output and error files at the end. Every step is a
compare-and-set on the batch record (tasks.batches.scripts), so a runner that
dies or runs twice at once can only repeat work, never count a line twice.
"""

from tasks.batches.record import ACTIVE, BATCH_PRIORITY, ENDPOINTS, STATUSES, Batch
from tasks.batches.service import BatchService

__all__ = ["ACTIVE", "BATCH_PRIORITY", "ENDPOINTS", "STATUSES", "Batch", "BatchService"]

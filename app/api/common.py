"""The reply to a generation, shared by every synchronous route (bodies: app.api.routing)."""

from __future__ import annotations

from flask import Response

from app import jobs
from app.context import settings
from tasks.models import ModelSpec
from tasks.protocol.requests import JobRequest

#: A waiting slot outlives the wait by this much, so a crashed API process's slots free themselves.
WAIT_SLACK_SECONDS = 30


def run_generation(spec: ModelSpec, job_request: JobRequest) -> Response:
    """Send the job through the queue and answer when it ends (or stream it)."""
    jobs.wait_for_worker(spec)
    timeout = settings().sync_timeout_seconds
    # The caller holds a connection until the end: it counts against the key's waiting cap till then.
    job = jobs.service().submit(owner=jobs.owner(), request=job_request, wait_seconds=timeout + WAIT_SLACK_SECONDS)
    if job_request.stream:
        from app.streaming import sse_response

        return sse_response(job, resumable=False, abort_on_disconnect=True, timeout=timeout)
    return jobs.wait_reply(job, timeout)

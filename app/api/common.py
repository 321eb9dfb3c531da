"""What every view needs: the caller, and the reply to a generation (bodies: app.api.routing)."""

from __future__ import annotations

from typing import Any

from flask import Response, g, jsonify

from app import jobs
from workers.models import ModelSpec

ANONYMOUS = "anonymous"


def owner() -> str:
    return getattr(g, "owner", ANONYMOUS)


def run_generation(spec: ModelSpec, job_request: dict[str, Any]) -> Response:
    """Send the job through the queue and answer synchronously (or stream it)."""
    jobs.wait_for_worker(spec)
    stream = bool(job_request.get("stream"))
    job_id = jobs.submit(spec, job_request, owner=owner(), stream=stream)["id"]
    if stream:
        from app.streaming import sse_response

        timeout = jobs.config()["SYNC_TIMEOUT_SECONDS"]
        return sse_response(job_id, job_request, abort_on_disconnect=True, timeout=timeout)
    return jsonify(jobs.wait_result(job_id, jobs.config()["SYNC_TIMEOUT_SECONDS"]))

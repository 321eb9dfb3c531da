"""The Batch API: create a batch from an uploaded file, poll it, list, cancel.

Creating one validates every line here, before anything runs (app.batch_input);
the batch runner in the workers (tasks.batches.runner) does the rest. A poll
only reads the batch's record: it never bills, and `request_counts` move as
the runner harvests lines.
"""

from __future__ import annotations

from flask import current_app, jsonify

from app import jobs
from app.api.files import service as files
from app.api.routing import PLAIN, Blueprint
from app.batch_input import validate
from app.context import settings
from app.schemas.batches import BatchCreateSchema, BatchListQuerySchema, BatchListSchema, BatchSchema, window_seconds
from tasks.batches import Batch, BatchService
from tasks.batches.record import prepared_name
from tasks.protocol.errors import APIError, InvalidRequest

blueprint = Blueprint("batches", __name__, tag="Batches", prefixes=PLAIN, description="OpenAI's Batch API.")


def service() -> BatchService:
    extensions = current_app.extensions
    if "inferq.batches" not in extensions:
        extensions["inferq.batches"] = BatchService(jobs.service().redis)
    return extensions["inferq.batches"]


def _validate(batch: Batch) -> None:
    """Every line, then start the batch or fail it with one error per bad line."""
    store, batches = files(), service()
    source = store.get(batch.input_file_id)
    with store.storage.writer(prepared_name(batch.id)) as sink, store.open(source) as lines:
        checked = validate(lines, batch.endpoint, sink, settings().max_content_length, lambda: batches.touch(batch.id))
    errors = checked.errors
    if not errors and checked.total == 0:
        errors = [{"code": "empty_file", "message": "The input file has no requests.", "param": None, "line": None}]
    if errors:
        store.storage.delete(prepared_name(batch.id))
        batches.fail(batch.id, errors, checked.total)
    else:
        batches.start(batch.id, checked.total, checked.model or "")


@blueprint.post("/batches")
@blueprint.arguments(BatchCreateSchema)
@blueprint.response(200, BatchSchema)
@blueprint.errors(400, 401, 404, 415, 429)
def create(data: dict):
    """Create a batch from an uploaded `batch` file; answers once every line is validated."""
    owner = jobs.owner()
    source = files().owned(data["input_file_id"], owner)
    if source.purpose != "batch":
        raise InvalidRequest("The input file must have been uploaded with purpose `batch`.", param="input_file_id")
    window = data["completion_window"]
    batch = service().create(owner, data["endpoint"], source.id, window, window_seconds(window), data.get("metadata"))
    _validate(batch)
    return jsonify(service().owned(batch.id, owner).to_json())


@blueprint.get("/batches/<batch_id>")
@blueprint.response(200, BatchSchema)
@blueprint.errors(401, 404, 429)
def get_batch(batch_id: str):
    """A batch, with live `request_counts`."""
    return jsonify(service().owned(batch_id, jobs.owner()).to_json())


@blueprint.post("/batches/<batch_id>/cancel")
@blueprint.response(200, BatchSchema)
@blueprint.errors(401, 404, 409, 429)
def cancel(batch_id: str):
    """Cancel a batch: `cancelling`, then `cancelled` with the output of what finished."""
    batches, owner = service(), jobs.owner()
    batch = batches.owned(batch_id, owner)
    status = batches.cancel(batch.id)
    if status not in ("cancelling", "cancelled"):
        raise APIError(
            f"The batch {batch_id} is {status}; it cannot be cancelled.", status=409, code="batch_not_cancellable"
        )
    return jsonify(batches.owned(batch_id, owner).to_json())


@blueprint.get("/batches")
@blueprint.arguments(BatchListQuerySchema, location="query")
@blueprint.response(200, BatchListSchema)
@blueprint.errors(400, 401, 404, 429)
def list_batches(query: dict):
    """The caller's batches, newest first."""
    page, has_more = service().page(jobs.owner(), query["limit"], query["after"])
    data = [batch.to_json() for batch in page]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return jsonify({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})

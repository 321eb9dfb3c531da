"""The Files API: upload (streamed to storage), list, read, download and delete the caller's files.

An upload is parsed as it arrives: the `file` part goes straight into the
storage's blob (tasks.storage), so a 200 MB file never sits in the API's
memory or in a temporary copy; past `INFERQ_MAX_FILE_BYTES` the upload is a
413 and nothing is kept.
"""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser

from app import jobs
from app.api.routing import PLAIN, Blueprint
from app.context import settings
from app.schemas.files import UPLOAD_BODY, FileDeletedSchema, FileListQuerySchema, FileListSchema, FileSchema
from tasks.files import UPLOAD_PURPOSES, FileService
from tasks.protocol.errors import APIError, InvalidRequest
from tasks.storage import LocalStorage

blueprint = Blueprint("files", __name__, tag="Files", prefixes=PLAIN, description="Files for batches.")
#: Room for the multipart framing and the `purpose` field around the file's own bytes.
MULTIPART_SLACK = 64 * 1024
#: werkzeug's multipart decoder refuses a body when its buffer (a possible boundary's few bytes kept from
#: the last read, after a line break) plus the next 64 KiB read pass this bound: it must exceed one read.
FORM_MEMORY = 1024 * 1024


def service() -> FileService:
    """One per app, built on first use from the app's settings."""
    extensions = current_app.extensions
    if "inferq.files" not in extensions:
        cfg = settings()
        extensions["inferq.files"] = FileService(jobs.service().redis, LocalStorage(cfg.files_dir))
    return extensions["inferq.files"]


def _too_large(limit: int) -> APIError:
    return APIError(
        f"The file is larger than the {limit} bytes allowed.", status=413, param="file", code="file_too_large"
    )


class _Parts:
    """werkzeug's stream factory: the first file part goes into the blob, any other is refused."""

    def __init__(self, sink: Any) -> None:
        self.sink, self.used = sink, False

    def __call__(self, *_: Any, **__: Any) -> Any:
        if self.used:
            raise InvalidRequest("Send exactly one file, in the `file` field.", param="file")
        self.used = True
        return self.sink


def _upload() -> dict:
    if request.mimetype != "multipart/form-data":
        raise InvalidRequest("Upload the file as multipart/form-data with `file` and `purpose`.", param="file")
    limit = settings().max_file_bytes
    request.max_content_length = limit + MULTIPART_SLACK
    files = service()
    try:
        with files.create(jobs.owner(), "upload", "pending", limit=limit) as sink:
            sink.too_large = lambda: _too_large(limit)
            parser = FormDataParser(
                stream_factory=_Parts(sink),
                max_form_memory_size=FORM_MEMORY,
                max_content_length=limit + MULTIPART_SLACK,
            )
            _, form, parts = parser.parse(
                request.stream, request.mimetype, request.content_length, request.mimetype_params
            )
            _check_form(form, parts)
            sink.filename, sink.purpose = _safe_name(parts["file"].filename), form["purpose"]
    except RequestEntityTooLarge as exc:
        raise _too_large(limit) from exc
    return files.get(sink.file_id).to_json()


def _safe_name(name: str | None) -> str:
    """The client's file name, without a path or characters that would break a header."""
    base = (name or "upload").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in base if c.isprintable() and c not in '"\r\n')[:255] or "upload"


def _check_form(form: Any, parts: Any) -> None:
    """Raising here, inside the write, leaves no blob and no record behind."""
    if "file" not in parts:
        raise InvalidRequest("The upload has no `file` field.", param="file", code="missing_required_parameter")
    purpose = form.get("purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidRequest(f"purpose must be one of {', '.join(UPLOAD_PURPOSES)}.", param="purpose")


@blueprint.post("/files")
@blueprint.doc(requestBody=UPLOAD_BODY)
@blueprint.response(200, FileSchema)
@blueprint.errors(400, 401, 413, 429)
def upload():
    """Upload a file (multipart: `file`, `purpose`)."""
    return jsonify(_upload())


@blueprint.get("/files")
@blueprint.arguments(FileListQuerySchema, location="query")
@blueprint.response(200, FileListSchema)
@blueprint.errors(400, 401, 404, 429)
def list_files(query: dict):
    """List the caller's files."""
    page, has_more = service().page(
        jobs.owner(),
        purpose=query["purpose"],
        limit=query["limit"],
        after=query["after"],
        newest_first=query["order"] == "desc",
    )
    data = [file.to_json() for file in page]
    first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
    return jsonify({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})


@blueprint.get("/files/<file_id>")
@blueprint.response(200, FileSchema)
@blueprint.errors(401, 404, 429)
def get_file(file_id: str):
    """A file's object."""
    return jsonify(service().owned(file_id, jobs.owner()).to_json())


@blueprint.get("/files/<file_id>/content")
@blueprint.response(200, {"type": "string", "format": "binary"}, content_type="application/octet-stream")
@blueprint.errors(401, 404, 429)
def content(file_id: str):
    """A file's bytes, streamed."""
    files = service()
    file = files.owned(file_id, jobs.owner())
    response = Response(files.content(file), mimetype="application/octet-stream")
    response.headers["Content-Length"] = str(file.bytes)
    response.headers["Content-Disposition"] = f'attachment; filename="{file.filename}"'
    return response


@blueprint.delete("/files/<file_id>")
@blueprint.response(200, FileDeletedSchema)
@blueprint.errors(401, 404, 429)
def delete(file_id: str):
    """Delete a file."""
    files = service()
    files.delete(files.owned(file_id, jobs.owner()))
    return jsonify({"id": file_id, "object": "file", "deleted": True})

"""Files: the OpenAI file object, its metadata in Redis and its bytes in storage (tasks.storage).

A file belongs to the API key that uploaded it (or to the owner of the batch
that produced it), like a job: another key cannot see, read or delete it.
The record is written only after the bytes are stored, so a listed file can
always be read.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

import redis

from tasks.keyspace import KEYS, Keyspace
from tasks.protocol.errors import NotFound
from tasks.storage import Storage, iter_blob

#: Purposes a client may upload with; the service writes `batch_output` itself.
UPLOAD_PURPOSES = ("batch", "fine-tune", "assistants", "vision", "user_data", "evals")
OUTPUT_PURPOSE = "batch_output"


@dataclass
class FileObject:
    id: str
    owner: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    expires_at: int | None = None

    def to_json(self) -> dict:
        """OpenAI's file object (never the owner)."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }

    @classmethod
    def from_hash(cls, raw: dict[bytes, bytes]) -> FileObject:
        fields = {key.decode(): value.decode() for key, value in raw.items()}
        return cls(
            id=fields["id"],
            owner=fields["owner"],
            bytes=int(fields["bytes"]),
            created_at=int(fields["created_at"]),
            filename=fields["filename"],
            purpose=fields["purpose"],
            expires_at=int(fields["expires_at"]) if fields.get("expires_at") else None,
        )


def new_file_id() -> str:
    return "file-" + secrets.token_hex(12)


def blob_name(file_id: str) -> str:
    return f"files/{file_id}"


class CountingWriter:
    """Counts what goes through; raises `too_large()` past `limit` bytes, before writing them."""

    def __init__(self, sink: BinaryIO, limit: int | None, too_large: Callable[[], Exception] | None = None) -> None:
        self.sink, self.limit, self.too_large, self.count = sink, limit, too_large, 0
        self.file_id, self.filename, self.purpose = "", "", ""

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.limit is not None and self.count > self.limit and self.too_large is not None:
            raise self.too_large()
        return self.sink.write(data)

    def seek(self, *args: int) -> int:  # werkzeug rewinds a finished part; the bytes are already written
        return self.count

    def flush(self) -> None:
        self.sink.flush()


class FileService:
    def __init__(self, client: redis.Redis, storage: Storage, keys: Keyspace = KEYS) -> None:
        self.redis, self.storage, self.keys = client, storage, keys

    @contextlib.contextmanager
    def create(
        self, owner: str, filename: str, purpose: str, file_id: str | None = None, limit: int | None = None
    ) -> Iterator[CountingWriter]:
        """Write a file's bytes in the block; its record appears once they are stored.

        The block may still change the writer's `filename` and `purpose` (an
        upload names them in form fields that may follow the file). `file_id`
        makes the write repeatable (a batch's output after a crash): the same id is rewritten.
        """
        counter = CountingWriter(None, limit)  # type: ignore[arg-type]
        counter.file_id, counter.filename, counter.purpose = file_id or new_file_id(), filename, purpose
        with self.storage.writer(blob_name(counter.file_id)) as sink:
            counter.sink = sink
            yield counter
        created = int(time.time())
        self.record(FileObject(counter.file_id, owner, counter.count, created, counter.filename, counter.purpose))

    def record(self, file: FileObject) -> FileObject:
        fields = {name: "" if value is None else str(value) for name, value in asdict(file).items()}
        pipe = self.redis.pipeline()
        pipe.hset(self.keys.file(file.id), mapping=fields)
        pipe.zadd(self.keys.owner_files(file.owner), {file.id: file.created_at})
        pipe.execute()
        return file

    def get(self, file_id: str) -> FileObject | None:
        raw = self.redis.hgetall(self.keys.file(file_id))
        return FileObject.from_hash(raw) if raw else None

    def owned(self, file_id: str, owner: str) -> FileObject:
        """The owner's file; another key's file is indistinguishable from one that does not exist."""
        file = self.get(file_id)
        if file is None or file.owner != owner or not self.storage.exists(blob_name(file_id)):
            raise NotFound(f"No such File object: {file_id}", param="file_id", code="file_not_found")
        return file

    def content(self, file: FileObject) -> Iterator[bytes]:
        return iter_blob(self.storage, blob_name(file.id))

    def open(self, file: FileObject) -> BinaryIO:
        return self.storage.reader(blob_name(file.id))

    def delete(self, file: FileObject) -> None:
        pipe = self.redis.pipeline()
        pipe.delete(self.keys.file(file.id))
        pipe.zrem(self.keys.owner_files(file.owner), file.id)
        pipe.execute()
        self.storage.delete(blob_name(file.id))

    def page(
        self, owner: str, *, purpose: str | None, limit: int, after: str | None, newest_first: bool
    ) -> tuple[list[FileObject], bool]:
        """One page of the owner's files in creation order; `after` is the last id of the previous page."""
        key = self.keys.owner_files(owner)
        ids = [raw.decode() for raw in (self.redis.zrevrange if newest_first else self.redis.zrange)(key, 0, -1)]
        if after:
            if after not in ids:
                raise NotFound(f"No such File object: {after}", param="after", code="file_not_found")
            ids = ids[ids.index(after) + 1 :]
        page: list[FileObject] = []
        for file_id in ids:
            file = self.get(file_id)
            if file is None:
                self.redis.zrem(key, file_id)
            elif purpose is None or file.purpose == purpose:
                page.append(file)
                if len(page) > limit:
                    break
        return page[:limit], len(page) > limit

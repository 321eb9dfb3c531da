"""Where file bytes live: one small interface, a local directory behind it by default.

Uploaded files, a batch's prepared requests, its harvested chunks and its
output files are named blobs (`files/<id>`, `batches/<id>/...`). The API
writes and reads them, and so does the batch runner in the workers, so in a
deployment the directory is shared (a compose volume, a network filesystem);
an object store fits the same four calls. A blob becomes visible only once
fully written (write to a temporary name, then rename), so a reader never
sees half a file and a writer killed midway leaves only a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

#: Bytes per read when streaming a blob.
CHUNK_BYTES = 64 * 1024


class Storage(Protocol):
    def writer(self, name: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    def reader(self, name: str) -> BinaryIO: ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None: ...

    def delete_tree(self, prefix: str) -> None: ...


class LocalStorage:
    """Blobs as files under `root`; names are relative paths made of safe characters only."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise ValueError(f"bad blob name {name!r}")
        return self.root / name

    @contextlib.contextmanager
    def writer(self, name: str) -> Iterator[BinaryIO]:
        """Write a blob; it replaces any blob of that name only when the block ends without an error."""
        path = self._path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            with open(temporary, "wb") as sink:
                yield sink
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    def reader(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")  # noqa: SIM115 - the caller closes it

    def exists(self, name: str) -> bool:
        return self._path(name).is_file()

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(name).unlink()

    def delete_tree(self, prefix: str) -> None:
        shutil.rmtree(self._path(prefix), ignore_errors=True)


def iter_blob(storage: Storage, name: str) -> Iterator[bytes]:
    """A blob in chunks, never whole in memory."""
    with storage.reader(name) as source:
        while chunk := source.read(CHUNK_BYTES):
            yield chunk

"""One reader per API process for the events of every job it waits on.

Each waiting request (a stream, a synchronous reply) used to block on its own
XREAD: 64 streams cost 64 Redis replies and 64 wake-ups per engine step, and
64 connections held. The hub keeps one blocking XREAD over every job waited on
in this process and hands each job's entries to its waiters, so the worker's
one write per engine step (tasks.jobs.delta_writer) is answered by one read.

A new waiter must join the XREAD in progress: the hub's connection is
interrupted with CLIENT UNBLOCK, and the read is issued again with it. Should
an interrupt miss (it crossed the read on its way), the read ends by itself
after BLOCK_MS. A Redis error reaches every waiter, as its own read's would.

A job's end event is the last entry its stream gets, so a waiter that has it
is read for no more. Without that, the reply's request still held its waiter
when the hub read again: one more XREAD per request, blocked on a finished
stream until the next request's CLIENT UNBLOCK ended it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict

import redis

#: The hub's longest single XREAD: bounds how late a waiter whose interrupt missed is joined.
BLOCK_MS = 250
#: How often the hub re-reads its connection's id (a silent reconnect changes it).
CLIENT_ID_SECONDS = 30.0
#: How long the hub rests after a Redis error before it reads again.
ERROR_PAUSE_SECONDS = 0.5

Entry = tuple[str, dict[str, str]]


#: The `type` of a job's last event (tasks.jobs.scripts writes it when the job ends).
END_TYPE = "end"

#: The largest part of a stream entry id Redis accepts (two unsigned 64-bit numbers).
_ID_PART_MAX = 2**64 - 1


def is_event_id(text: str) -> bool:
    """Whether `text` is an id Redis takes as a stream cursor (`<ms>-<seq>`).

    Checked before a cursor joins the shared read: Redis refuses the whole
    XREAD for one bad id, which would fail every waiter of the process.
    """
    millis, dash, seq = text.partition("-")
    parts = (millis, seq)
    return bool(dash) and all(p.isascii() and p.isdigit() and int(p) <= _ID_PART_MAX for p in parts)


def _order(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


class Waiter:
    """One request's view of one job's events, from `cursor` on."""

    def __init__(self, hub: EventHub, key: str, cursor: str) -> None:
        self.hub, self.key, self.cursor = hub, key, cursor
        self.entries: list[Entry] = []
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        #: Has the job's end event: nothing follows it, so the hub reads this stream for it no more.
        self.ended = False

    def read(self, block_ms: int) -> list[Entry]:
        """Entries after the last one read, waiting up to `block_ms` for the first; [] if none came."""
        if not self.ready.is_set():
            self.ready.wait(block_ms / 1000)
        with self.hub.lock:
            entries, self.entries = self.entries, []
            failure, self.failure = self.failure, None
            self.ready.clear()
        if failure is not None:
            raise failure
        return entries

    def close(self) -> None:
        self.hub.leave(self)

    def __enter__(self) -> Waiter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class EventHub:
    """The waiters of one process and the thread that reads for them all (started on first use)."""

    def __init__(self, client: redis.Redis) -> None:
        self.lock = threading.Lock()
        self._commands = client
        self._client: redis.Redis | None = None  # its own connection, opened by the hub's thread
        self._waiters: dict[str, list[Waiter]] = defaultdict(list)
        self._joined = threading.Condition(self.lock)
        self._blocked = False
        self._client_id: int | None = None
        self._client_id_at = 0.0
        self._thread: threading.Thread | None = None

    def join(self, key: str, cursor: str) -> Waiter:
        if not is_event_id(cursor):
            raise ValueError(f"not a stream entry id: {cursor!r}")
        waiter = Waiter(self, key, cursor)
        with self.lock:
            self._waiters[key].append(waiter)
            interrupt = self._blocked and self._client_id
            # One interrupt ends the read; whoever joins before the next one starts is in it.
            self._blocked = False
            self._joined.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="inferq-event-hub", daemon=True)
                self._thread.start()
        if interrupt:
            self._interrupt(interrupt)
        return waiter

    def leave(self, waiter: Waiter) -> None:
        with self.lock:
            waiters = self._waiters.get(waiter.key)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[waiter.key]

    def _interrupt(self, client_id: int) -> None:
        with contextlib.suppress(redis.RedisError):  # the read then ends by itself within BLOCK_MS
            self._commands.client_unblock(client_id)

    def _run(self) -> None:
        while True:
            with self.lock:
                self._joined.wait_for(lambda: bool(self._cursors()))
            try:
                client = self._connection()
                with self.lock:
                    # Taken with the flag in one hold of the lock: a waiter missing from this read
                    # joins after it, sees the flag and interrupts the read.
                    streams = self._cursors()
                    self._blocked = bool(streams)
                if not streams:  # the last of them got its end event meanwhile
                    continue
                reply = client.xread(streams, block=BLOCK_MS)
            except redis.RedisError as exc:
                self._fail(exc)
                time.sleep(ERROR_PAUSE_SECONDS)
                continue
            finally:
                with self.lock:
                    self._blocked = False
            self._deliver(reply or [])

    def _cursors(self) -> dict[str, str]:
        """Each stream to read, from its furthest-behind waiter's cursor; under the lock."""
        cursors = {}
        for key, waiters in self._waiters.items():
            reading = [w.cursor for w in waiters if not w.ended]
            if reading:
                cursors[key] = min(reading, key=_order)
        return cursors

    def _connection(self) -> redis.Redis:
        if self._client is None:
            self._client = redis.Redis(connection_pool=self._commands.connection_pool, single_connection_client=True)
        if self._client_id is None or time.monotonic() - self._client_id_at > CLIENT_ID_SECONDS:
            self._client_id = int(self._client.client_id())
            self._client_id_at = time.monotonic()
        return self._client

    def _deliver(self, reply: list) -> None:
        with self.lock:
            for key, entries in reply:
                decoded = [
                    (entry_id.decode(), {name.decode(): value.decode() for name, value in fields.items()})
                    for entry_id, fields in entries
                ]
                for waiter in self._waiters.get(key.decode(), ()):
                    after = _order(waiter.cursor)
                    fresh = [entry for entry in decoded if _order(entry[0]) > after]
                    if fresh:
                        waiter.entries.extend(fresh)
                        waiter.cursor = fresh[-1][0]
                        waiter.ended = fresh[-1][1].get("type") == END_TYPE
                        waiter.ready.set()

    def _fail(self, exc: BaseException) -> None:
        with self.lock:
            self._client_id = None
            for waiters in self._waiters.values():
                for waiter in waiters:
                    if not waiter.ended:  # one that has its end needs nothing more
                        waiter.failure = exc
                        waiter.ready.set()

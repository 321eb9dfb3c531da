"""A mixed load from one API key, as real clients send it: synchronous, streamed and queued chat completions.

Synchronous and streamed requests come from the official openai SDK, each
thread sending its next request when the previous one answered (a closed
loop), so some of them are in flight whenever the fault strikes and some are
sent while it lasts. Queued jobs are a burst of POST /queue/chat/completions
from httpx, as a batch submitter sends them. Nothing retries: a request the
fault breaks is recorded as broken, and whether its job still ended is read
from Redis afterwards (devstack.faults.audit).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import httpx
import openai

from tests.harness import CHAT_MODEL

#: Per load: synchronous threads x requests each, streaming threads x streams each, queued jobs.
SYNC, STREAMS, QUEUED, ROUNDS = 3, 2, 12, 2
MAX_TOKENS = 12
CLIENT_TIMEOUT = 300.0


def chat_body(i: int, tokens: int = MAX_TOKENS, prompt: str | None = None) -> dict:
    return {
        "model": CHAT_MODEL,
        "messages": [{"role": "user", "content": prompt or f"Count to {i % 10 + 3}."}],
        "max_tokens": tokens,
        "ignore_eos": True,
        "seed": i,
    }


@dataclass
class Outcome:
    """One request: its kind, the HTTP status it got (None: the connection broke), the job id it learned."""

    kind: str
    status: int | None
    job_id: str | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: object = None


class MixedLoad:
    """Start with `start()`, wait with `join()`; `outcomes` and `told` say what the clients saw."""

    def __init__(self, base_url: str, key: str, *, queued: int = QUEUED, tokens: int = MAX_TOKENS) -> None:
        self.base_url, self.key, self.queued, self.tokens = base_url, key, queued, tokens
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        #: Set when the fault's time is up: no client sends another request.
        self.stop = threading.Event()

    # -- the clients ---------------------------------------------------------------------------
    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url + "/v1", api_key=self.key, max_retries=0, timeout=CLIENT_TIMEOUT)

    def http(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=CLIENT_TIMEOUT)

    def record(self, outcome: Outcome) -> Outcome:
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    # -- one request of each kind -----------------------------------------------------------------
    @staticmethod
    def _refused(kind: str, exc: openai.APIStatusError) -> Outcome:
        """An HTTP error answer, with its headers and body (the error shape is part of what is checked)."""
        try:
            body = exc.response.json()
        except ValueError:
            body = exc.response.text
        return Outcome(kind, exc.status_code, None, str(exc), dict(exc.response.headers), body)

    def sync_once(self, i: int) -> Outcome:
        body = chat_body(i, self.tokens)
        try:
            reply = self.sdk().chat.completions.create(
                model=body["model"],
                messages=body["messages"],
                max_tokens=self.tokens,
                seed=i,
                extra_body={"ignore_eos": True},
            )
        except openai.APIStatusError as exc:
            return self.record(self._refused("sync", exc))
        except openai.APIError as exc:  # connection broken or timed out: the job may still exist
            return self.record(Outcome("sync", None, error=repr(exc)))
        return self.record(Outcome("sync", 200, "job_" + reply.id.removeprefix("chatcmpl-")))

    def stream_once(self, i: int) -> Outcome:
        body = chat_body(i, self.tokens)
        job_id = None
        try:
            raw = self.sdk().chat.completions.with_raw_response.create(
                model=body["model"],
                messages=body["messages"],
                max_tokens=self.tokens,
                seed=i,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            job_id = raw.headers.get("x-job-id")
            for _chunk in raw.parse():
                pass
        except openai.APIStatusError as exc:
            return self.record(self._refused("stream", exc))
        except openai.APIError as exc:  # broken mid-stream, or an error event after the stream began
            return self.record(Outcome("stream", None if job_id is None else 200, job_id, repr(exc)))
        return self.record(Outcome("stream", 200, job_id))

    def queue_once(self, i: int, body: dict | None = None) -> Outcome:
        try:
            with self.http() as http:
                response = http.post("/queue/chat/completions", json=body or chat_body(i, self.tokens))
        except httpx.HTTPError as exc:
            return self.record(Outcome("queued", None, error=repr(exc)))
        data = response.json() if response.headers.get("content-type", "").startswith("application/json") else None
        job_id = data.get("id") if response.status_code == 202 and isinstance(data, dict) else None
        return self.record(Outcome("queued", response.status_code, job_id, None, dict(response.headers), data))

    def cancel(self, job_id: str) -> Outcome:
        try:
            with self.http() as http:
                response = http.post(f"/queue/jobs/{job_id}/cancel")
        except httpx.HTTPError as exc:
            return Outcome("cancel", None, job_id, repr(exc))
        return Outcome("cancel", response.status_code, job_id, body=response.json())

    # -- the load ----------------------------------------------------------------------------------
    def start(self) -> MixedLoad:
        def closed_loop(send, first: int) -> None:
            for r in range(ROUNDS):
                if not self.stop.is_set():
                    send(first + r)

        def burst() -> None:
            for i in range(self.queued):
                if not self.stop.is_set():
                    self.queue_once(i)

        self._threads = [threading.Thread(target=burst, name="load-queued", daemon=True)]
        self._threads += [
            threading.Thread(target=closed_loop, args=(self.sync_once, 100 + 10 * t), name="load-sync", daemon=True)
            for t in range(SYNC)
        ]
        self._threads += [
            threading.Thread(target=closed_loop, args=(self.stream_once, 200 + 10 * t), name="load-sse", daemon=True)
            for t in range(STREAMS)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def join(self, timeout: float) -> int:
        """Wait for every client to have its answer (or its error); how many are still waiting at the deadline.

        At the deadline no client sends another request, so the books taken
        next are final but for the requests still in flight.
        """
        from tests.harness import wait_until

        try:
            wait_until(lambda: not any(t.is_alive() for t in self._threads), timeout, "the load's clients")
        except TimeoutError:
            self.stop.set()
        return sum(t.is_alive() for t in self._threads)

    @property
    def told(self) -> set[str]:
        """Every job id a client was given: a 202's id, a stream's X-Job-Id, a completion's id."""
        return {o.job_id for o in self.outcomes if o.job_id}

    def statuses(self) -> list[int | None]:
        return [o.status for o in self.outcomes]

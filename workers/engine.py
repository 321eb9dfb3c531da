"""The vLLM adapter: one AsyncLLM per process, shared by every task thread.

Celery runs tasks on a threads pool; vLLM's AsyncLLM lives on one asyncio loop
in its own thread. Each task submits its request to that loop and reads the
outputs back through a thread-safe queue, so all running tasks are batched
continuously by the same engine (a lone request starts at once; a batch never
waits for its longest member).

vllm and torch are imported lazily: only a worker process ever loads them.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from workers.sampling import build_sampling_params

log = logging.getLogger(__name__)


class EngineDead(RuntimeError):
    """The engine core died; the request may be retried once the engine restarts."""


class RequestRejected(ValueError):
    """The engine refused the request itself (bad parameters): retrying cannot help."""


@dataclass
class Delta:
    """Part of one choice's output: new text and tokens since the last delta."""

    prompt_index: int
    prompt_tokens: int
    choice: dict[str, Any]
    finished: bool


_DONE = object()


def _logprob_entry(token_id: int, lp: Any) -> dict[str, Any]:
    return {"token_id": token_id, "token": lp.decoded_token or "", "logprob": float(lp.logprob)}


def _convert_logprobs(completion: Any) -> list[dict[str, Any]] | None:
    if completion.logprobs is None:
        return None
    entries = []
    for token_id, position in zip(completion.token_ids, completion.logprobs, strict=False):
        chosen = position.get(token_id)
        top = sorted(
            (_logprob_entry(tid, lp) for tid, lp in position.items()),
            key=lambda entry: entry["logprob"],
            reverse=True,
        )
        entry = (
            _logprob_entry(token_id, chosen)
            if chosen is not None
            else {"token_id": token_id, "token": "", "logprob": 0.0}
        )
        entry["top"] = top
        entries.append(entry)
    return entries


def convert_completion(completion: Any) -> dict[str, Any]:
    """A vLLM CompletionOutput as plain JSON-safe data."""
    return {
        "index": completion.index,
        "text": completion.text,
        "token_ids": list(completion.token_ids),
        "finish_reason": completion.finish_reason,
        "stop_reason": completion.stop_reason if isinstance(completion.stop_reason, (str, int)) else None,
        "cumulative_logprob": completion.cumulative_logprob,
        "logprobs": _convert_logprobs(completion),
    }


def _embedding_params() -> Any:
    """PoolingParams for a sentence embedding: the model's own pooler and normalisation."""
    from vllm import PoolingParams

    return PoolingParams(task="embed")


class Engine:
    """Owns the event loop thread and the AsyncLLM; restarts the engine if it dies.

    `options` are vLLM's AsyncEngineArgs, decided by the model's configuration
    (tasks.models.ModelSpec.engine_options): this module only runs them.
    """

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self.options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._llm: Any = None
        self._generation = 0
        self._restart_lock = threading.Lock()
        self.restarts = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self._llm = self._call(self._build())
        log.info("engine for %s ready", self.name)

    async def _build(self) -> Any:
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(**self.options))

    def stop(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def restart(self, seen_generation: int) -> None:
        """Rebuild a dead engine once, however many threads saw it die."""
        with self._restart_lock:
            if self._generation != seen_generation:
                return  # another thread already restarted it
            log.error("engine for %s died; restarting", self.name)
            old, self._llm = self._llm, None
            try:
                old.shutdown()
            except Exception:  # noqa: BLE001 - a dead engine may fail to shut down cleanly
                log.exception("shutting down the dead engine failed")
            self._llm = self._call(self._build())
            self._generation += 1
            self.restarts += 1

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def healthy(self) -> bool:
        return self._llm is not None and not self._llm.errored

    def load(self) -> int:
        """Requests the engine holds (running + waiting)."""
        llm = self._llm
        return llm.get_num_unfinished_requests() if llm is not None else 0

    def _call(self, coroutine: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # -- requests ----------------------------------------------------------
    def generate(
        self,
        request_id: str,
        prompts: list[list[int]],
        params: dict[str, Any],
        *,
        stream: bool,
        logprobs: int | None,
    ) -> Iterator[Delta]:
        """Run every prompt of one request at once; yield deltas as they come.

        Non-streaming requests ask vLLM for the final output only, which saves
        the worker a Python object per token.
        """
        from vllm.v1.engine.exceptions import EngineDeadError

        llm = self._llm
        if llm is None:
            raise EngineDead("engine is not running")
        from vllm.exceptions import VLLMClientError

        try:
            sampling = build_sampling_params(params, stream=stream, logprobs=logprobs)
        except (ValueError, VLLMClientError) as exc:
            raise RequestRejected(str(exc)) from exc
        outputs: queue.SimpleQueue = queue.SimpleQueue()
        ids = self.request_ids(request_id, len(prompts))

        async def pump(index: int, prompt: list[int]) -> None:
            try:
                async for output in llm.generate({"prompt_token_ids": prompt}, sampling, ids[index]):
                    outputs.put((index, output))
            except BaseException as exc:  # noqa: BLE001 - handed to the task thread
                outputs.put((index, exc))
            finally:
                outputs.put((index, _DONE))

        for index, prompt in enumerate(prompts):
            asyncio.run_coroutine_threadsafe(pump(index, prompt), self._loop)
        pending = len(prompts)
        failure: BaseException | None = None
        try:
            while pending:
                index, item = outputs.get()
                if item is _DONE:
                    pending -= 1
                elif isinstance(item, BaseException):
                    failure = failure or item
                else:
                    for completion in item.outputs:
                        yield Delta(
                            index,
                            len(item.prompt_token_ids or prompts[index]),
                            convert_completion(completion),
                            completion.finish_reason is not None,
                        )
        finally:
            if pending:  # the consumer stopped early (cancel, error): free the slots now
                self.abort(ids)
        if failure is not None:
            if isinstance(failure, EngineDeadError) or not self.healthy:
                raise EngineDead(str(failure)) from failure
            if isinstance(failure, (ValueError, TypeError, VLLMClientError)):
                raise RequestRejected(str(failure)) from failure
            if isinstance(failure, asyncio.CancelledError):
                return
            raise failure

    def embed(self, request_id: str, prompts: list[list[int]]) -> list[list[float]]:
        """Pool every input of one request at once and return one vector per input.

        Each input is its own engine request, submitted concurrently, so the
        inputs of this job and of every other running job share the engine's
        batches (one request of 256 inputs and 256 requests of one input cost
        the same engine steps).
        """
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        llm = self._llm
        if llm is None:
            raise EngineDead("engine is not running")
        params = _embedding_params()
        ids = self.request_ids(request_id, len(prompts))

        async def pool(index: int) -> list[float]:
            final = None
            async for output in llm.encode({"prompt_token_ids": prompts[index]}, params, ids[index]):
                final = output
            if final is None or final.outputs.data.numel() == 0:
                return []  # aborted (the job was cancelled): no vector
            return final.outputs.data.float().tolist()

        async def pool_all() -> list[Any]:
            return await asyncio.gather(*(pool(i) for i in range(len(prompts))), return_exceptions=True)

        results = self._call(pool_all())
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is None:
            return results
        if isinstance(failure, EngineDeadError) or not self.healthy:
            raise EngineDead(str(failure)) from failure
        if isinstance(failure, (ValueError, TypeError, VLLMClientError)):
            raise RequestRejected(str(failure)) from failure
        raise failure

    def abort(self, request_ids: list[str] | str) -> None:
        llm = self._llm
        if llm is None:
            return
        try:
            self._call(llm.abort(request_ids), timeout=10)
        except Exception:  # noqa: BLE001 - aborting a finished request is harmless
            log.debug("abort of %s failed", request_ids, exc_info=True)

    def request_ids(self, request_id: str, count: int) -> list[str]:
        return [f"{request_id}-{i}" for i in range(count)]

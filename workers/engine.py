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
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

from workers.outputs import Delta, convert_choice, convert_logprobs
from workers.sampling import Sampling

log = logging.getLogger(__name__)


class EngineDead(RuntimeError):
    """The engine core died; the request may be retried once the engine restarts."""


#: How long an aborted request may take to hand over what it computed (an engine that hangs hands nothing).
ABORT_GRACE_SECONDS = 2.0


class TimedOut(TimeoutError):
    """The request ran past its deadline (the model's time limit) and was aborted.

    `late` holds what the engine handed over on the abort: a request that asked
    for its final output only gets all its tokens there, and they are billed.
    """

    def __init__(self, message: str, late: list[Delta] | None = None) -> None:
        super().__init__(message)
        self.late = late or []


class RequestRejected(ValueError):
    """The engine refused the request itself (bad parameters): retrying cannot help."""


_DONE = object()


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
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        options = dict(self.options)
        if isinstance(options.get("structured_outputs_config"), dict):  # vLLM converts it only from its CLI
            options["structured_outputs_config"] = StructuredOutputsConfig(**options["structured_outputs_config"])
        return AsyncLLM.from_engine_args(AsyncEngineArgs(**options))

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

    def tokenizer(self) -> Any:
        """The engine's tokenizer (tool-call parsers need it)."""
        return self._require().get_tokenizer()

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
        sampling: Sampling,
        *,
        stream: bool,
        deadline: float | None = None,
    ) -> Iterator[Delta]:
        """Run every prompt of one request at once; yield deltas as they come.

        Non-streaming requests ask vLLM for the final output only, which saves
        the worker a Python object per token. Past `deadline` (time.monotonic)
        the request is aborted and `TimedOut` raised, even if the engine hangs.
        """
        outputs = self._submit(request_id, prompts, sampling, stream)
        ids = self.request_ids(request_id, len(prompts))
        pending, failure = len(prompts), None
        try:
            while pending:
                try:
                    index, item = _next(outputs, deadline)
                except TimedOut:
                    self.abort(ids)
                    late, pending = _drain(outputs, prompts, pending), 0
                    raise TimedOut(f"{request_id}: past its time limit", late) from None
                if item is _DONE:
                    pending -= 1
                elif isinstance(item, BaseException):
                    failure = failure or item
                else:
                    yield from _deltas(index, prompts[index], item)
        finally:
            if pending:  # the consumer stopped early (cancel, error): free the slots now
                self.abort(ids)
        if failure is not None and not isinstance(failure, asyncio.CancelledError):
            raise self._classify(failure) from failure

    def _submit(self, request_id: str, prompts: list[list[int]], sampling: Sampling, stream: bool) -> queue.SimpleQueue:
        """Hand every prompt to the engine's loop; outputs arrive as (prompt index, output | error | _DONE)."""
        from vllm.exceptions import VLLMClientError

        llm = self._require()
        try:
            params = sampling.to_vllm(stream=stream)
        except (ValueError, VLLMClientError) as exc:
            raise RequestRejected(str(exc)) from exc
        outputs: queue.SimpleQueue = queue.SimpleQueue()
        ids = self.request_ids(request_id, len(prompts))

        async def pump(index: int, prompt: list[int]) -> None:
            try:
                async for output in llm.generate({"prompt_token_ids": prompt}, params, ids[index]):
                    outputs.put((index, output))
            except BaseException as exc:  # noqa: BLE001 - handed to the task thread
                outputs.put((index, exc))
            finally:
                outputs.put((index, _DONE))

        for index, prompt in enumerate(prompts):
            asyncio.run_coroutine_threadsafe(pump(index, prompt), self._loop)
        return outputs

    def _require(self) -> Any:
        llm = self._llm
        if llm is None:
            raise EngineDead("engine is not running")
        return llm

    def _classify(self, failure: BaseException) -> BaseException:
        """The one place an engine failure is sorted: retry after a restart, refuse, or fail."""
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        if isinstance(failure, EngineDeadError) or not self.healthy:
            return EngineDead(str(failure))
        if isinstance(failure, (ValueError, TypeError, VLLMClientError)):
            return RequestRejected(str(failure))
        return failure

    def embed(self, request_id: str, prompts: list[list[int]], deadline: float | None = None) -> list[list[float]]:
        """Pool every input of one request at once and return one vector per input.

        Each input is its own engine request, submitted concurrently, so the
        inputs of this job and of every other running job share the engine's
        batches (one request of 256 inputs and 256 requests of one input cost
        the same engine steps).
        """
        llm = self._require()
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

        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            results = self._call(pool_all(), timeout=timeout)
        except concurrent.futures.TimeoutError:
            self.abort(ids)
            raise TimedOut(f"{request_id}: past its time limit") from None
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise self._classify(failure) from failure
        return results

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


def _next(outputs: queue.SimpleQueue, deadline: float | None) -> tuple[int, Any]:
    if deadline is None:
        return outputs.get()
    try:
        return outputs.get(timeout=max(0.0, deadline - time.monotonic()))
    except queue.Empty:
        raise TimedOut("past its time limit") from None


def _drain(outputs: queue.SimpleQueue, prompts: list[list[int]], pending: int) -> list[Delta]:
    """The deltas of the final outputs an abort produces, for up to ABORT_GRACE_SECONDS."""
    late: list[Delta] = []
    grace = time.monotonic() + ABORT_GRACE_SECONDS
    while pending:
        try:
            index, item = _next(outputs, grace)
        except TimedOut:
            break
        if item is _DONE:
            pending -= 1
        elif not isinstance(item, BaseException):
            late.extend(_deltas(index, prompts[index], item))
    return late


def _deltas(index: int, prompt: list[int], output: Any) -> Iterator[Delta]:
    """One engine output of one prompt as deltas; the prompt's logprobs ride on its first."""
    prompt_logprobs = convert_logprobs(prompt, output.prompt_logprobs)
    for completion in output.outputs:
        yield Delta(index, convert_choice(completion), prompt_logprobs)
        prompt_logprobs = None

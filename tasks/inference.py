"""The Celery task that runs one chat or text completion job on this worker's engine."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from tasks.dispatch import GENERATE_TASK
from tasks.jobs import Claim, JobService
from tasks.protocol import bodies
from tasks.protocol.requests import GenerationRequest
from tasks.runner import PartialOutputLost, TimeLimitExceeded, run_job
from workers.outputs import Choice, Delta, PromptResult, select_best
from workers.tools import decided


def run_generation(claim: Claim, service: JobService, deadline: float) -> dict[str, Any]:
    """Drive the engine for one job; stream its deltas if asked; return the final OpenAI body.

    A streamed job's deltas go out through the worker's delta writer
    (tasks.jobs.delta_writer); it stops generating once it is cancelled (its
    deltas are refused). Past `deadline` it stops too, and fails billed for what it computed.
    """
    from workers import runtime
    from workers.engine import TimedOut

    request = claim.request
    assert isinstance(request, GenerationRequest)
    if request.stream and service.emitted(claim.job_id):
        raise PartialOutputLost("part of the answer was already streamed when the engine failed")
    results = [PromptResult(len(prompt)) for prompt in request.prompts]
    samples: list[dict[int, Choice]] = [{} for _ in request.prompts]
    engine = runtime.current()
    raw = engine.generate(claim.job_id, request.prompts, request.sampling, stream=request.stream, deadline=deadline)
    held: dict[tuple[int, int], Choice] = {}  # a tool request's samples until each ends
    deltas = decided(request.tools, raw, engine.tokenizer, held)  # tool calls are decided there, once
    stream = service.deltas.open(claim) if request.stream else None
    try:
        for delta in deltas:
            if delta.prompt_logprobs is not None:
                results[delta.prompt_index].prompt_logprobs = delta.prompt_logprobs
            _add(samples, delta)
            if stream is not None and not stream.send(delta):
                break  # cancelled: closing the generator aborts the engine's requests
    except TimedOut as timed_out:
        for delta in timed_out.late:  # a final-output-only request's tokens come with its abort
            _add(samples, delta)
        unfinished = [*held.values(), *(choice for by_index in samples for choice in by_index.values())]
        computed = sum(len(choice.token_ids) for choice in unfinished)
        prompt = sum(len(p) for p in request.prompts)
        usage = {"prompt_tokens": prompt, "completion_tokens": computed, "total_tokens": prompt + computed}
        raise TimeLimitExceeded(usage) from None
    finally:
        deltas.close()
        if stream is not None:
            stream.wait()  # the end comes after every delta; a rerun counts what was streamed
    if stream is not None:
        stream.close()
    return _body(claim, request, results, samples)


def _add(samples: list[dict[int, Choice]], delta: Delta) -> None:
    samples[delta.prompt_index].setdefault(delta.choice.index, Choice(delta.choice.index)).extend(delta.choice)


def _body(
    claim: Claim, request: GenerationRequest, results: list[PromptResult], samples: list[dict[int, Choice]]
) -> dict[str, Any]:
    computed = 0
    for result, by_index in zip(results, samples, strict=True):
        choices = sorted(by_index.values(), key=lambda c: c.index)
        computed += sum(len(choice.token_ids) for choice in choices)
        n = request.sampling.n
        result.choices = select_best(choices, n) if request.sampling.samples > n else choices
    return bodies.completion_body(claim.job_id, request, results, computed)


@shared_task(name=GENERATE_TASK, acks_late=True, reject_on_worker_lost=True)
def generate(job_id: str) -> None:
    run_job(job_id, run_generation)

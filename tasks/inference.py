"""The Celery task that runs one chat or text completion job on this worker's engine."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from tasks.dispatch import GENERATE_TASK
from tasks.jobs import Claim, JobService
from tasks.protocol import bodies
from tasks.protocol.requests import GenerationRequest
from tasks.runner import PartialOutputLost, run_job


def run_generation(claim: Claim, service: JobService) -> dict[str, Any]:
    """Drive the engine for one job; stream its deltas if asked; return the final OpenAI body."""
    from workers import runtime
    from workers.outputs import Choice, PromptResult, select_best

    request = claim.request
    assert isinstance(request, GenerationRequest)
    if request.stream and service.emitted(claim.job_id):
        raise PartialOutputLost("part of the answer was already streamed when the engine failed")
    results = [PromptResult(len(prompt)) for prompt in request.prompts]
    samples: list[dict[int, Choice]] = [{} for _ in request.prompts]
    for delta in runtime.current().generate(claim.job_id, request.prompts, request.sampling, stream=request.stream):
        if delta.prompt_logprobs is not None:
            results[delta.prompt_index].prompt_logprobs = delta.prompt_logprobs
        sample = samples[delta.prompt_index].setdefault(delta.choice.index, Choice(delta.choice.index))
        sample.extend(delta.choice)
        if request.stream:
            service.append_delta(claim.job_id, delta)
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

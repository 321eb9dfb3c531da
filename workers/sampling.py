"""Translate the validated OpenAI-style parameters into vLLM's SamplingParams."""

from __future__ import annotations

from typing import Any


def build_sampling_params(params: dict[str, Any], *, stream: bool, logprobs: int | None) -> Any:
    """Map one request's parameters onto SamplingParams.

    `best_of` was dropped by vLLM's current engine, so it is emulated: the
    engine draws `best_of` samples with their cumulative log-probabilities and
    the caller keeps the `n` best (see `select_best`).
    """
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    n = params.get("n") or 1
    best_of = params.get("best_of") or n
    wants_best_of = best_of > n
    if wants_best_of and logprobs is None:
        logprobs = 0  # the cumulative log-probability only comes with logprobs
    bias = params.get("logit_bias")
    return SamplingParams(
        n=best_of,
        temperature=params.get("temperature", 1.0),
        top_p=params.get("top_p", 1.0),
        top_k=params.get("top_k", -1) or -1,
        min_p=params.get("min_p", 0.0),
        presence_penalty=params.get("presence_penalty", 0.0),
        frequency_penalty=params.get("frequency_penalty", 0.0),
        repetition_penalty=params.get("repetition_penalty", 1.0),
        seed=params.get("seed"),
        stop=params.get("stop") or None,
        stop_token_ids=params.get("stop_token_ids") or None,
        max_tokens=params.get("max_tokens"),
        min_tokens=params.get("min_tokens", 0),
        ignore_eos=params.get("ignore_eos", False),
        detokenize=params.get("detokenize", True),
        skip_special_tokens=params.get("skip_special_tokens", True),
        logit_bias={int(k): v for k, v in bias.items()} if bias else None,
        logprobs=logprobs,
        output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
    )


def select_best(choices: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """Keep the `n` samples with the highest cumulative log-probability, re-indexed."""
    ranked = sorted(choices, key=lambda c: c.get("cumulative_logprob") or float("-inf"), reverse=True)[:n]
    return [dict(choice, index=i) for i, choice in enumerate(ranked)]

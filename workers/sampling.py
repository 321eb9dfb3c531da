"""What the engine is asked to sample, as one typed object, and its vLLM form.

`Sampling` is built once in the API from the validated body (tasks.protocol),
stored in the job record, and turned into vLLM's SamplingParams here, in the
only layer that imports vLLM. Each default is written once: on this class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Fields held as tuples (hashable, comparable) and sent as lists.
LIST_FIELDS = ("stop", "stop_token_ids", "allowed_token_ids", "bad_words")


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    #: Samples drawn per prompt when more than `n` (OpenAI's legacy best_of); the `n` best are kept.
    best_of: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    max_tokens: int | None = None
    min_tokens: int = 0
    ignore_eos: bool = False
    detokenize: bool = True
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    include_stop_str_in_output: bool = False
    #: Only these token ids may be sampled (empty: any).
    allowed_token_ids: tuple[int, ...] = ()
    bad_words: tuple[str, ...] = ()
    #: Tokens per streamed delta (None: the engine's default).
    stream_interval: int | None = None
    logit_bias: tuple[tuple[int, float], ...] = ()
    #: Alternatives per generated token to report (0 = the chosen token's only); None = no logprobs.
    logprobs: int | None = None
    #: Same for the prompt's tokens (`echo` with `logprobs` on text completions).
    prompt_logprobs: int | None = None
    #: Constrained decoding (workers.structured): the JSON schema, as JSON text, every sample must match.
    json_schema: str | None = None
    #: Constrained decoding: any JSON object (`response_format: json_object`).
    json_object: bool = False

    @property
    def samples(self) -> int:
        """Sequences the engine generates per prompt: what a request costs."""
        return max(self.n, self.best_of or 1)

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sampling:
        data = dict(data)
        for name in LIST_FIELDS:
            data[name] = tuple(data.get(name) or ())
        data["logit_bias"] = tuple((int(k), float(v)) for k, v in data.get("logit_bias") or ())
        return cls(**data)

    def _structured_outputs(self) -> Any:
        """vLLM's constraint for the engine's grammar backend (chosen per engine: workers.structured)."""
        if self.json_schema is None and not self.json_object:
            return None
        from vllm.sampling_params import StructuredOutputsParams

        if self.json_schema is not None:
            return StructuredOutputsParams(json=self.json_schema)
        return StructuredOutputsParams(json_object=True)

    def to_vllm(self, *, stream: bool) -> Any:
        """vLLM's SamplingParams. Streams ask for deltas; others only for the final output (no object per token).

        `best_of` was dropped by vLLM's current engine, so it is emulated: the
        engine draws `best_of` samples with their cumulative log-probabilities
        and the worker keeps the `n` best (`select_best`).
        """
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        logprobs = self.logprobs
        if self.samples > self.n and logprobs is None:
            logprobs = 0  # the cumulative log-probability only comes with logprobs
        return SamplingParams(
            n=self.samples,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            stop=list(self.stop) or None,
            stop_token_ids=list(self.stop_token_ids) or None,
            max_tokens=self.max_tokens,
            min_tokens=self.min_tokens,
            ignore_eos=self.ignore_eos,
            detokenize=self.detokenize,
            skip_special_tokens=self.skip_special_tokens,
            spaces_between_special_tokens=self.spaces_between_special_tokens,
            include_stop_str_in_output=self.include_stop_str_in_output,
            allowed_token_ids=list(self.allowed_token_ids) or None,
            bad_words=list(self.bad_words) or None,
            stream_interval=self.stream_interval,
            logit_bias=dict(self.logit_bias) or None,
            logprobs=logprobs,
            prompt_logprobs=self.prompt_logprobs,
            structured_outputs=self._structured_outputs(),
            output_kind=RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY,
        )

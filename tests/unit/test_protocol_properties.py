"""Properties of the pure objects every job passes through, over generated values (derandomised: repeatable).

A request built in the API is stored in the job record as JSON and rebuilt by
the worker: it must come back equal. A body the schemas accept must become a
Sampling without an error (a 500). The bodies the worker stores must be JSON a
strict parser reads back unchanged. The one body decoder must answer any bytes
with an object or a 400, never another exception.
"""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from app.api.routing import MAX_JSON_DEPTH, read_json
from app.job_requests import SAMPLING_FIELDS, sampling
from app.schemas.chat import ChatCompletionRequestSchema
from app.schemas.completions import CompletionRequestSchema
from app.schemas.sampling import MAX_ENGINE_INT
from tasks.jobs.record import encode_field
from tasks.protocol.bodies import completion_body, embedding_body, stream_chunk, usage_chunk
from tasks.protocol.errors import InvalidRequest
from tasks.protocol.requests import EmbeddingRequest, GenerationRequest, request_from_json
from workers.outputs import Choice, Delta, PromptResult, TokenLogprob
from workers.sampling import Sampling

PROPERTY = settings(max_examples=80, deadline=None, database=None, derandomize=True)
SLOW = settings(PROPERTY, max_examples=40, suppress_health_check=[HealthCheck.too_slow])

# Text as the API holds it: any Unicode scalar value (the body parser refuses lone surrogates).
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
WORDS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=8)
TOKEN_IDS = st.lists(st.integers(0, 200_000), min_size=1, max_size=6)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
FLOAT32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
LOGPROB = st.floats(max_value=0.0, allow_nan=False, allow_infinity=False)
INT64 = st.integers(-(2**63), 2**63 - 1)


def samplings(n: st.SearchStrategy[int]) -> st.SearchStrategy[Sampling]:
    """Sampling as app.job_requests builds it: validated ranges, tuples for the list fields."""
    return st.builds(
        Sampling,
        n=n,
        best_of=st.none() | st.integers(1, 128),
        temperature=st.floats(0, 2),
        top_p=st.floats(0, 1, exclude_min=True),
        top_k=st.integers(-1, MAX_ENGINE_INT),
        min_p=st.floats(0, 1),
        presence_penalty=st.floats(-2, 2),
        frequency_penalty=st.floats(-2, 2),
        repetition_penalty=st.floats(0, 2, exclude_min=True),
        seed=st.none() | INT64,
        stop=st.lists(WORDS, max_size=4).map(tuple),
        stop_token_ids=st.lists(st.integers(0, 10**6), max_size=4).map(tuple),
        max_tokens=st.none() | st.integers(1, 10**6),
        min_tokens=st.integers(0, 10**6),
        **{name: st.booleans() for name, held in Sampling.__dataclass_fields__.items() if held.type == "bool"},
        allowed_token_ids=st.lists(st.integers(0, 10**6), max_size=4).map(tuple),
        bad_words=st.lists(WORDS, max_size=3).map(tuple),
        stream_interval=st.none() | st.integers(1, MAX_ENGINE_INT),
        logit_bias=st.lists(st.tuples(st.integers(0, 10**9 - 1), st.floats(-100, 100)), max_size=4).map(tuple),
        logprobs=st.none() | st.integers(0, 20),
        prompt_logprobs=st.none() | st.integers(0, 20),
    )


@st.composite
def generation_requests(draw, n: st.SearchStrategy[int] = st.integers(1, 128)) -> GenerationRequest:
    prompts = draw(st.lists(TOKEN_IDS, min_size=1, max_size=4))
    echo = draw(st.none() | st.lists(TEXT, min_size=len(prompts), max_size=len(prompts)))
    return GenerationRequest(
        endpoint=draw(st.sampled_from(["chat", "completion"])),
        model=draw(WORDS),
        created=draw(st.integers(0, 2**40)),
        prompts=prompts,
        sampling=draw(samplings(n)),
        stream=draw(st.booleans()),
        include_usage=draw(st.booleans()),
        echo=echo,
        echo_first_tokens=draw(st.none() | st.just([text[:1] for text in echo or []])),
    )


embedding_requests = st.builds(
    EmbeddingRequest,
    model=WORDS,
    created=st.integers(0, 2**40),
    prompts=st.lists(TOKEN_IDS, min_size=1, max_size=4),
    encoding_format=st.sampled_from(["float", "base64"]),
)


def through_the_record(data: dict) -> dict:
    """What tasks.jobs stores (its one encoder) and a strict parser (no NaN) reads back."""
    return json.loads(encode_field(data), parse_constant=_refuse)


def _refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


@PROPERTY
@given(request=generation_requests() | embedding_requests)
def test_a_request_survives_the_job_record_and_costs_prompts_times_samples(request):
    assert request_from_json(through_the_record(request.to_json())) == request
    if isinstance(request, GenerationRequest):
        samples = max(request.sampling.n, request.sampling.best_of or 1)
        assert request.sequences == len(request.prompts) * samples and request.sampling.samples == samples


# -- bodies the schemas accept --------------------------------------------------------------------

SAMPLING_BODY = st.fixed_dictionaries(
    {},
    optional={
        "n": st.integers(1, 128),
        "best_of": st.none() | st.integers(1, 128),
        "temperature": st.none() | st.floats(0, 2),
        "top_p": st.none() | st.floats(0, 1, exclude_min=True),
        "top_k": st.none() | st.integers(-1, MAX_ENGINE_INT),
        "seed": st.none() | INT64,
        "stop": st.none() | WORDS | st.lists(WORDS, max_size=16),
        "stop_token_ids": st.none() | st.lists(st.integers(0, 10**6), max_size=8),
        "max_tokens": st.none() | st.integers(1, 10**6),
        "min_tokens": st.integers(0, 10**6),
        "logit_bias": st.none() | st.dictionaries(st.integers(0, 10**9 - 1).map(str), st.floats(-100, 100)),
        "bad_words": st.lists(WORDS, max_size=4),
        "allowed_token_ids": st.none() | st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
        "stream_interval": st.none() | st.integers(1, MAX_ENGINE_INT),
        "detokenize": st.booleans(),
        "stream": st.booleans(),
    },
)


@SLOW
@given(fields=SAMPLING_BODY, chat=st.booleans())
def test_an_accepted_body_becomes_a_sampling_that_survives_the_record(fields, chat):
    """Any body the schema accepts (refusals are ValidationErrors, a 400) gives a Sampling, never a 500."""
    schema, head = (
        (ChatCompletionRequestSchema(), {"messages": [{"role": "user", "content": "hi"}]})
        if chat
        else (CompletionRequestSchema(), {"prompt": "hi"})
    )
    try:
        data = schema.load({"model": "m", **head, **fields})
    except ValidationError:
        return
    params = sampling(data)
    for name, value in fields.items():
        if value is not None and name in SAMPLING_FIELDS and name != "logit_bias":
            held = (value,) if name == "stop" and isinstance(value, str) else value  # one stop string: a list of it
            assert getattr(params, name) == (tuple(held) if isinstance(held, list) else held), name
    assert dict(params.logit_bias) == {int(k): v for k, v in (fields.get("logit_bias") or {}).items()}
    assert Sampling.from_json(through_the_record(params.to_json())) == params


# -- response bodies ------------------------------------------------------------------------------

TOKEN_LOGPROBS = st.lists(
    st.builds(TokenLogprob, token=TEXT, logprob=LOGPROB, top=st.lists(st.tuples(TEXT, LOGPROB), max_size=3)),
    max_size=3,
)


@st.composite
def results_for(draw, request: GenerationRequest) -> list[PromptResult]:
    """One PromptResult per prompt with the request's `n` choices, as the worker hands them over."""
    with_logprobs = request.sampling.logprobs is not None
    return [
        PromptResult(
            prompt_tokens=len(prompt),
            choices=[
                Choice(
                    index=i,
                    text=draw(TEXT),
                    token_ids=draw(st.lists(st.integers(0, 10), max_size=3)),
                    finish_reason=draw(st.sampled_from(["stop", "length", "abort", None])),
                    logprobs=draw(TOKEN_LOGPROBS) if with_logprobs else None,
                )
                for i in range(request.sampling.n)
            ],
            prompt_logprobs=draw(TOKEN_LOGPROBS) if request.sampling.prompt_logprobs is not None else None,
        )
        for prompt in request.prompts
    ]


@SLOW
@given(data=st.data(), request=generation_requests(n=st.integers(1, 4)))
def test_completion_bodies_are_strict_json_with_openai_numbering(data, request):
    results = data.draw(results_for(request))
    body = completion_body("job_x", request, results, computed=data.draw(st.integers(0, 10**6)))
    assert through_the_record(body) == body
    assert [choice["index"] for choice in body["choices"]] == list(range(len(request.prompts) * request.sampling.n))
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    chunk = stream_chunk("job_x", request, 0, results[0].choices[0], first=True)
    assert through_the_record(chunk) == chunk
    totals = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert through_the_record(usage_chunk("job_x", request, totals))["usage"] == totals


@PROPERTY
@given(
    request=embedding_requests,
    vectors=st.lists(st.lists(FLOAT32, min_size=1, max_size=8), min_size=1, max_size=3),
)
def test_embedding_bodies_are_strict_json_and_base64_is_little_endian_float32(request, vectors):
    body = embedding_body(request, vectors)
    assert through_the_record(body) == body
    for item, vector in zip(body["data"], vectors, strict=True):
        if request.encoding_format == "base64":
            raw = base64.b64decode(item["embedding"])
            assert list(struct.unpack(f"<{len(vector)}f", raw)) == vector
        else:
            assert item["embedding"] == vector


@PROPERTY
@given(
    delta=st.builds(
        Delta,
        prompt_index=st.integers(0, 99),
        choice=st.builds(
            Choice,
            index=st.integers(0, 127),
            text=TEXT,
            finish_reason=st.sampled_from(["stop", "length", None]),
            logprobs=st.none() | TOKEN_LOGPROBS,
        ),
    )
)
def test_a_delta_survives_the_event_stream(delta):
    """All a stream reader needs comes back (token ids and cumulative logprobs stay in the worker by design)."""
    assert Delta.from_json(through_the_record(delta.to_json())).to_json() == delta.to_json()


# -- the body decoder -----------------------------------------------------------------------------

LONE = st.sampled_from(["\ud800", "x\udbff", "\udc00y", "\udfff"])
JSON_TEXT = TEXT | LONE
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | INT64 | FINITE | JSON_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=20,
)


def _lone_surrogate(value) -> bool:
    if isinstance(value, str):
        return any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, dict):
        return any(_lone_surrogate(k) or _lone_surrogate(v) for k, v in value.items())
    return isinstance(value, list) and any(map(_lone_surrogate, value))


@PROPERTY
@given(value=st.dictionaries(JSON_TEXT, JSON_VALUES, max_size=4))
def test_the_decoder_returns_the_object_or_says_which_string_is_not_text(value):
    data = json.dumps(value).encode()
    if _lone_surrogate(value):
        with pytest.raises(InvalidRequest) as refused:
            read_json(data)
        assert refused.value.code == "invalid_value" and "lone surrogate" in refused.value.message
    else:
        assert read_json(data) == value


@pytest.mark.parametrize("depth", [1, MAX_JSON_DEPTH - 1, MAX_JSON_DEPTH, MAX_JSON_DEPTH + 1, 900, 5000])
@pytest.mark.parametrize("as_object", [True, False])
def test_the_decoder_takes_exactly_max_json_depth_levels(depth, as_object):
    value: object = 1
    for _ in range(depth - 1):
        value = {"k": value} if as_object else [value]
    body = {"field": value}  # `depth` levels: the body's object, then depth - 1 containers
    if depth <= MAX_JSON_DEPTH:
        assert read_json(json.dumps(body).encode()) == body
    else:
        with pytest.raises(InvalidRequest) as refused:
            read_json(json.dumps(body).encode() if depth < 900 else _nested_text(depth, as_object))
        assert refused.value.code == "invalid_json"


def _nested_text(depth: int, as_object: bool) -> bytes:
    """Deeper than json.dumps (recursive itself) can write: the decoder's own RecursionError is met."""
    opening, closing = (b'{"k":', b"}") if as_object else (b"[", b"]")
    return b'{"field":' + opening * (depth - 1) + b"1" + closing * (depth - 1) + b"}"


@PROPERTY
@given(data=st.binary(max_size=64) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_the_decoder_answers_any_bytes_with_an_object_or_a_400(data):
    try:
        body = read_json(data)
    except InvalidRequest as refused:
        assert refused.status == 400 and refused.code in ("invalid_json", "invalid_value")
    else:
        assert isinstance(body, dict)


@PROPERTY
@given(
    text=st.text(st.characters(categories=("Cs", "Ll", "So")), max_size=6),
    number=st.integers(-(2**80), 2**80),
)
def test_the_record_keeps_what_orjson_refuses(text, number):
    """A tool call's arguments may hold a lone surrogate decoded from the model's text, and an integer
    may pass 64 bits: the record still takes them (the stdlib's path), and they read back equal."""
    value = {"arguments": text, "n": number}
    assert json.loads(encode_field(value)) == value

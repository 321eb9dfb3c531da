"""The official openai SDK, sync and async, against gunicorn → Redis → worker → vLLM.

Every call here is one a user makes unchanged against OpenAI; each test runs
twice (`OpenAI` and `AsyncOpenAI`) through the `sdk` fixture and asserts exact
behaviour: indexes, token counts, texts that must agree between the streamed
and the whole answer, and the SDK's own exception class for every error.
"""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest
from tokenizers import Tokenizer

from tests.harness import CHAT_MODEL, GHOST_MODEL

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Tell me a story about a lighthouse keeper."}]
CAPITAL_PROMPT = "The capital of France is"


def chat(**kwargs):
    return lambda client: client.chat.completions.create(model=CHAT_MODEL, **kwargs)


def complete(**kwargs):
    return lambda client: client.completions.create(model=CHAT_MODEL, **kwargs)


@pytest.fixture(scope="module")
def tokenizer(base_config):
    """The served model's own tokenizer, to build token-array prompts as a client would."""
    return Tokenizer.from_file(str(Path(base_config.models[CHAT_MODEL].local_path) / "tokenizer.json"))


def test_chat(sdk):
    reply = sdk.call(chat(messages=FRANCE, temperature=0, max_tokens=16))
    assert reply.object == "chat.completion" and reply.model == CHAT_MODEL
    assert reply.id.startswith("chatcmpl-") and abs(reply.created - time.time()) < 600
    [choice] = reply.choices
    assert choice.index == 0 and choice.message.role == "assistant"
    assert "Paris" in choice.message.content
    assert choice.finish_reason in ("stop", "length") and choice.logprobs is None
    usage = reply.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_completion_with_a_string_prompt(sdk):
    reply = sdk.call(complete(prompt=CAPITAL_PROMPT, temperature=0, max_tokens=4))
    assert reply.object == "text_completion" and reply.id.startswith("cmpl-")
    [choice] = reply.choices
    assert choice.index == 0 and "Paris" in choice.text
    assert reply.usage.completion_tokens == 4 and choice.finish_reason == "length"


def test_completion_with_a_list_of_strings_numbers_choices_per_prompt(sdk):
    """OpenAI numbers the choices of prompt p as p*n ... p*n+n-1; greedy texts equal one-prompt calls."""
    prompts = [CAPITAL_PROMPT, "One, two, three,"]
    batch = sdk.call(complete(prompt=prompts, temperature=0, max_tokens=4))
    alone = [sdk.call(complete(prompt=prompt, temperature=0, max_tokens=4)) for prompt in prompts]
    assert [c.index for c in batch.choices] == [0, 1]
    assert [c.text for c in batch.choices] == [a.choices[0].text for a in alone]
    assert batch.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone)
    sampled = sdk.call(complete(prompt=prompts, n=2, max_tokens=3, seed=1))
    assert [c.index for c in sampled.choices] == [0, 1, 2, 3]
    assert sampled.usage.completion_tokens == 4 * 3


def test_completion_with_token_array_prompts_equals_the_text_prompt(sdk, tokenizer):
    ids = tokenizer.encode(CAPITAL_PROMPT).ids
    other = tokenizer.encode("One, two, three,").ids
    text = sdk.call(complete(prompt=CAPITAL_PROMPT, temperature=0, max_tokens=4))
    tokens = sdk.call(complete(prompt=ids, temperature=0, max_tokens=4))
    many = sdk.call(complete(prompt=[ids, other], temperature=0, max_tokens=4))
    assert tokens.usage.prompt_tokens == text.usage.prompt_tokens == len(ids)
    assert tokens.choices[0].text == text.choices[0].text == many.choices[0].text
    assert [c.index for c in many.choices] == [0, 1] and many.usage.prompt_tokens == len(ids) + len(other)


def test_models_list_and_retrieve(sdk):
    models = {model.id: model for model in sdk.call(lambda client: client.models.list())}
    assert CHAT_MODEL in models and GHOST_MODEL in models
    one = sdk.call(lambda client: client.models.retrieve(CHAT_MODEL))
    assert one.id == CHAT_MODEL and one.object == "model" and one.owned_by
    assert one.model_dump() == models[CHAT_MODEL].model_dump()


def test_stream_without_usage(sdk):
    whole = sdk.call(chat(messages=STORY, seed=7, max_tokens=12))
    chunks = sdk.call(chat(messages=STORY, seed=7, max_tokens=12, stream=True))
    assert all(chunk.usage is None and len(chunk.choices) == 1 for chunk in chunks)
    assert {chunk.id for chunk in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.choices[0].delta.role is None for chunk in chunks[1:])
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == whole.choices[0].message.content
    reasons = [chunk.choices[0].finish_reason for chunk in chunks]
    assert reasons[-1] == whole.choices[0].finish_reason and set(reasons[:-1]) == {None}


def test_stream_with_include_usage(sdk):
    whole = sdk.call(complete(prompt="Once upon a time", seed=9, max_tokens=10))
    chunks = sdk.call(
        complete(prompt="Once upon a time", seed=9, max_tokens=10, stream=True, stream_options={"include_usage": True})
    )
    *deltas, last = chunks
    assert last.choices == [] and last.usage.model_dump() == whole.usage.model_dump()
    assert all(chunk.usage is None for chunk in deltas)
    assert "".join(chunk.choices[0].text for chunk in deltas) == whole.choices[0].text


def test_n_2_stream_carries_each_choice_by_index(sdk):
    whole = sdk.call(chat(messages=STORY, n=2, seed=5, max_tokens=10))
    chunks = sdk.call(chat(messages=STORY, n=2, seed=5, max_tokens=10, stream=True))
    texts, roles, ends = {0: "", 1: ""}, [], []
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            roles += [choice.index] if choice.delta.role else []
            ends += [choice.index] if choice.finish_reason else []
    assert sorted(roles) == [0, 1] and sorted(ends) == [0, 1], "one role and one finish_reason per choice"
    assert texts == {choice.index: choice.message.content for choice in whole.choices}


def test_chat_logprobs_shape(sdk):
    reply = sdk.call(chat(messages=FRANCE, max_tokens=6, seed=3, logprobs=True, top_logprobs=3))
    [choice] = reply.choices
    content = choice.logprobs.content
    assert len(content) == reply.usage.completion_tokens
    assert b"".join(bytes(item.bytes) for item in content).decode() == choice.message.content
    for item in content:
        assert item.bytes == list(item.token.encode()) and item.logprob <= 0
        assert len(item.top_logprobs) == 3
        ranked = [alt.logprob for alt in item.top_logprobs]
        assert ranked == sorted(ranked, reverse=True) and item.logprob <= ranked[0]
    plain = sdk.call(chat(messages=FRANCE, max_tokens=2, logprobs=True))
    assert all(item.top_logprobs == [] for item in plain.choices[0].logprobs.content)


def test_completion_logprobs_shape(sdk):
    reply = sdk.call(complete(prompt="Once upon a time", max_tokens=6, seed=3, logprobs=2))
    [choice] = reply.choices
    logprobs = choice.logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == reply.usage.completion_tokens
    assert "".join(logprobs.tokens) == choice.text
    offsets = [0]
    for token in logprobs.tokens[:-1]:
        offsets.append(offsets[-1] + len(token))
    assert logprobs.text_offset == offsets
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert 2 <= len(top) <= 3  # the `logprobs` most likely, plus the sampled token when it is not among them
        assert top.get(token, logprob) == logprob


def test_streamed_completion_logprobs_continue_the_whole(sdk):
    whole = sdk.call(complete(prompt="Once upon a time", max_tokens=6, seed=3, logprobs=2))
    chunks = sdk.call(complete(prompt="Once upon a time", max_tokens=6, seed=3, logprobs=2, stream=True))
    expected = whole.choices[0].logprobs
    tokens = [token for chunk in chunks for token in chunk.choices[0].logprobs.tokens]
    offsets = [offset for chunk in chunks for offset in chunk.choices[0].logprobs.text_offset]
    assert tokens == expected.tokens
    assert offsets == expected.text_offset


def test_completion_echo_with_logprobs_scores_the_prompt(sdk, tokenizer):
    """The loglikelihood request of evaluation harnesses: echo the prompt with its token logprobs."""
    prompt = CAPITAL_PROMPT + " Paris"
    reply = sdk.call(complete(prompt=prompt, echo=True, logprobs=1, max_tokens=1, temperature=0))
    [choice] = reply.choices
    logprobs = choice.logprobs
    prompt_tokens = len(tokenizer.encode(prompt).ids)
    assert reply.usage.prompt_tokens == prompt_tokens and choice.text.startswith(prompt)
    assert len(logprobs.tokens) == prompt_tokens + 1 and "".join(logprobs.tokens) == choice.text
    assert logprobs.token_logprobs[0] is None and all(lp <= 0 for lp in logprobs.token_logprobs[1:])
    assert logprobs.text_offset[0] == 0


def test_with_raw_response_headers(sdk):
    raw = sdk.raw(lambda client: client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=FRANCE, max_tokens=2
    ))  # fmt: skip
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("application/json")
    assert int(raw.headers["x-ratelimit-limit"]) >= int(raw.headers["x-ratelimit-remaining"]) >= 0
    reply = raw.parsed
    assert reply.object == "chat.completion" and reply.choices[0].message.role == "assistant"


def test_every_response_names_its_request(sdk):
    raw = sdk.raw(lambda client: client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=FRANCE, max_tokens=2
    ))  # fmt: skip
    assert raw.headers.get("x-request-id")
    assert raw.parsed._request_id == raw.headers["x-request-id"]


def test_stream_headers_name_the_job(sdk, http):
    """The synchronous stream's X-Job-Id resolves through the queue route, to the job that was billed.

    A delivered synchronous answer is not kept (README, "Reliability"): the
    record keeps its status and usage, not the prompt or the result.
    """
    raw = sdk.raw(lambda client: client.chat.completions.with_raw_response.create(
        model=CHAT_MODEL, messages=FRANCE, max_tokens=4, stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    job_id = raw.headers["x-job-id"]
    assert raw.headers["content-type"].startswith("text/event-stream")
    chunks = list(raw.parsed)
    assert chunks[0].id == "chatcmpl-" + job_id.removeprefix("job_")
    job = http.get(f"/queue/jobs/{job_id}", params={"wait": 60}).json()
    assert job["id"] == job_id and job["status"] == "completed" and job["result"] is None
    assert job["usage"] == chunks[-1].usage.model_dump(exclude_none=True)


# Errors: the SDK's own class, status, `param` and `code` for each.


def test_invalid_value_is_bad_request_naming_the_param(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.call(chat(messages=FRANCE, temperature=5))
    assert caught.value.status_code == 400
    assert caught.value.param == "temperature" and caught.value.code == "invalid_value"


def test_unknown_field_is_bad_request_naming_it(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.call(chat(messages=FRANCE, extra_body={"no_such_field": 1}))
    assert caught.value.param == "no_such_field"


def test_vllm_extra_fields_are_accepted(sdk):
    reply = sdk.call(chat(messages=FRANCE, max_tokens=2, extra_body={"use_beam_search": False, "priority": 0}))
    assert reply.usage.completion_tokens <= 2


def test_too_long_is_bad_request_with_context_length_code(sdk):
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.call(chat(messages=FRANCE, max_tokens=100_000))
    assert caught.value.param == "messages" and caught.value.code == "context_length_exceeded"


def test_bad_key_is_authentication_error(sdk):
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.call(lambda client: client.models.list(), api_key="sk-not-a-key")
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert caught.value.param is None


def test_unknown_model_is_not_found(sdk):
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.call(lambda client: client.chat.completions.create(model="no-such-model", messages=FRANCE))
    assert caught.value.param == "model" and caught.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.call(lambda client: client.models.retrieve("no-such-model"))
    assert caught.value.code == "model_not_found"


def test_over_the_limit_is_rate_limit_error(sdk, key_with_rpm):
    key = key_with_rpm(1)
    assert sdk.call(lambda client: client.models.list(), api_key=key)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.call(lambda client: client.models.list(), api_key=key)
    assert caught.value.status_code == 429 and caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) > 0


def test_model_without_worker_is_503(sdk):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.call(lambda client: client.chat.completions.create(model=GHOST_MODEL, messages=FRANCE, max_tokens=2))
    assert caught.value.status_code == 503 and isinstance(caught.value, openai.InternalServerError)
    assert caught.value.code == "no_worker"

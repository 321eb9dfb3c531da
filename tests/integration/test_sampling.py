"""Every sampling parameter reaches the engine and shows its effect.

These go through the Flask app, the real Redis, the real Celery worker and
the real vLLM engine on the embedded model.
"""

import pytest

from tests.harness import CHAT_MODEL

QUESTION = [{"role": "user", "content": "Write a short story about a dragon."}]


@pytest.fixture()
def chat(client):
    def call(**params):
        body = {"model": CHAT_MODEL, "messages": params.pop("messages", QUESTION), **params}
        response = client.post("/v1/chat/completions", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return call


@pytest.fixture()
def complete(client):
    def call(**params):
        response = client.post("/v1/completions", json={"model": CHAT_MODEL, **params})
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    return call


def text(body, i=0):
    choice = body["choices"][i]
    return choice["message"]["content"] if "message" in choice else choice["text"]


def test_capital_of_france(chat):
    body = chat(messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0)
    assert "Paris" in text(body)
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_max_tokens_bounds_the_completion(chat):
    body = chat(max_tokens=5)
    assert body["usage"]["completion_tokens"] == 5 and body["choices"][0]["finish_reason"] == "length"


def test_stop_truncates(chat):
    full = text(chat(temperature=0, max_tokens=40))
    word = full.split()[3]
    stopped = chat(temperature=0, max_tokens=40, stop=[word])
    assert text(stopped) == full[: full.index(word)]
    assert stopped["choices"][0]["finish_reason"] == "stop"


def test_stop_token_ids(client, chat):
    full = chat(temperature=0, max_tokens=20, logprobs=True)
    tokens = full["choices"][0]["logprobs"]["content"]
    from app.tokenizers import ModelTokenizer
    from tasks.settings import Settings

    tokenizer = ModelTokenizer(Settings.load().models[CHAT_MODEL].local_path)
    target = tokenizer.encode(tokens[4]["token"], add_special_tokens=False)[0]
    stopped = chat(temperature=0, max_tokens=20, stop_token_ids=[target])
    assert stopped["usage"]["completion_tokens"] <= 5 and stopped["choices"][0]["finish_reason"] == "stop"


def test_n_gives_n_choices(chat):
    # ignore_eos: every choice runs to max_tokens, so usage must bill exactly n x max_tokens
    # (a bill for one choice, 8, or any early stop now fails); logprobs count each choice's tokens.
    body = chat(n=3, max_tokens=8, seed=7, ignore_eos=True, logprobs=True)
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert [len(c["logprobs"]["content"]) for c in body["choices"]] == [8, 8, 8]
    assert [c["finish_reason"] for c in body["choices"]] == ["length"] * 3
    assert body["usage"]["completion_tokens"] == 3 * 8


def test_same_seed_same_text_and_different_seed_differs(chat):
    first = text(chat(seed=1234, max_tokens=24))
    assert text(chat(seed=1234, max_tokens=24)) == first
    assert text(chat(seed=4321, max_tokens=24)) != first


def test_temperature_zero_is_deterministic_and_greedy(chat):
    greedy = text(chat(temperature=0, max_tokens=24))
    assert text(chat(temperature=0, max_tokens=24)) == greedy
    assert text(chat(top_k=1, max_tokens=24, seed=3)) == greedy
    assert text(chat(min_p=1.0, max_tokens=24, seed=3)) == greedy
    assert text(chat(top_p=1e-9, max_tokens=24, seed=3)) == greedy


def test_high_temperature_changes_text(chat):
    greedy = text(chat(temperature=0, max_tokens=24))
    assert text(chat(temperature=2.0, max_tokens=24, seed=5)) != greedy


def test_penalties_change_greedy_text(chat):
    greedy = text(chat(temperature=0, max_tokens=48))
    for penalty in ({"presence_penalty": 2.0}, {"frequency_penalty": 2.0}, {"repetition_penalty": 1.8}):
        assert text(chat(temperature=0, max_tokens=48, **penalty)) != greedy, penalty


def test_min_tokens_and_ignore_eos(chat):
    short = chat(messages=[{"role": "user", "content": "What is the capital of France?"}], temperature=0, max_tokens=30)
    assert short["usage"]["completion_tokens"] < 12 and short["choices"][0]["finish_reason"] == "stop"
    longer = chat(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
        min_tokens=12,
    )
    assert longer["usage"]["completion_tokens"] >= 12
    ignored = chat(
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        temperature=0,
        max_tokens=30,
        ignore_eos=True,
    )
    assert ignored["usage"]["completion_tokens"] == 30


def test_logprobs_come_back(chat):
    body = chat(max_tokens=4, logprobs=True, top_logprobs=3, seed=1)
    content = body["choices"][0]["logprobs"]["content"]
    assert len(content) == 4
    for entry in content:
        assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 3
        assert entry["top_logprobs"][0]["logprob"] >= entry["top_logprobs"][-1]["logprob"]
    assert "".join(e["token"] for e in content) == text(body)


def test_best_of_keeps_the_most_likely_samples(complete):
    body = complete(prompt="Once upon a time", max_tokens=8, n=2, best_of=5, seed=11, logprobs=0)
    assert len(body["choices"]) == 2
    scores = [sum(c["logprobs"]["token_logprobs"]) for c in body["choices"]]
    assert scores[0] >= scores[1]
    pool = complete(prompt="Once upon a time", max_tokens=8, n=5, seed=11, logprobs=0)
    pool_scores = sorted((sum(c["logprobs"]["token_logprobs"]) for c in pool["choices"]), reverse=True)
    assert scores == pytest.approx(pool_scores[:2], abs=1e-3)


def test_logit_bias_forces_a_token(chat, complete):
    from app.tokenizers import ModelTokenizer
    from tasks.settings import Settings

    tokenizer = ModelTokenizer(Settings.load().models[CHAT_MODEL].local_path)
    banana = tokenizer.encode(" banana", add_special_tokens=False)[0]
    body = complete(prompt="I like", max_tokens=3, temperature=0, logit_bias={str(banana): 100})
    assert text(body) == " banana" * 3


def test_detokenize_false_returns_tokens_without_text(complete):
    body = complete(prompt="The capital of France is", max_tokens=4, temperature=0, detokenize=False)
    assert text(body) == "" and body["usage"]["completion_tokens"] == 4


def test_skip_special_tokens_false_keeps_them(chat):
    kept = chat(
        temperature=0,
        max_tokens=30,
        min_tokens=0,
        skip_special_tokens=False,
        ignore_eos=True,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    skipped = chat(
        temperature=0,
        max_tokens=30,
        ignore_eos=True,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "<|im_end|>" in text(kept) and "<|im_end|>" not in text(skipped)


def test_user_is_accepted(chat):
    assert chat(max_tokens=2, user="someone")["choices"]


def test_text_completion_echo_and_multiple_prompts(complete):
    body = complete(prompt=["The capital of France is", "One, two, three,"], max_tokens=3, temperature=0, echo=True)
    assert body["object"] == "text_completion" and len(body["choices"]) == 2
    assert body["choices"][0]["text"].startswith("The capital of France is")
    assert body["choices"][1]["text"].startswith("One, two, three,")


def test_text_completion_logprobs_shape(complete):
    body = complete(prompt="The capital of France is", max_tokens=3, temperature=0, logprobs=2)
    logprobs = body["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == 3 and len(logprobs["top_logprobs"][0]) == 2
    assert logprobs["text_offset"][0] == 0


def test_token_array_prompt(complete):
    from app.tokenizers import ModelTokenizer
    from tasks.settings import Settings

    ids = ModelTokenizer(Settings.load().models[CHAT_MODEL].local_path).encode("The capital of France is")
    assert text(complete(prompt=ids, max_tokens=4, temperature=0)) == text(
        complete(prompt="The capital of France is", max_tokens=4, temperature=0)
    )

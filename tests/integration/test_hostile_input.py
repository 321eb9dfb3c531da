"""Hostile bodies get a 4xx in OpenAI's error shape naming the field, and cost nothing.

Every body goes to the ghost model (configured, never served), through both
the synchronous route and the queue route of its endpoint: had validation let
it through, the queue route would have queued it (the ghost's queue is never
drained, so its depth is an exact measure) and the synchronous route would
have waited for a worker and answered 503. Each test also holds a key of its
own, so "nothing billed" is the key's usage records staying empty. No vLLM
worker is needed: everything here is refused before a job exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from app.auth.keys import KeyStore
from app.schemas.sampling import MAX_BAD_WORDS, MAX_LOGIT_BIAS, MAX_STOP_CHARS, MAX_STOP_TOKEN_IDS
from tasks.keyspace import KEYS
from tests.conftest import keyed_client_class
from tests.harness import EMBED_MODEL, GHOST_MODEL

HI = [{"role": "user", "content": "hi"}]
#: smollm2's vocabulary (the ghost model shares its files).
VOCAB = 49152
ROUTES = {
    "chat": ("/v1/chat/completions", "/queue/chat/completions"),
    "completion": ("/v1/completions", "/queue/completions"),
    "embedding": ("/v1/embeddings",),
}


@dataclass(frozen=True)
class Ledger:
    """What a request that got through would have changed: counters, the ghost's queue, the key's jobs and bill."""

    submitted: dict[str, int]
    ghost_queue: frozenset[bytes]
    key_jobs: int
    billed: list[bytes]

    @classmethod
    def read(cls, redis, owner: str) -> Ledger:
        stats = {key.decode(): int(value) for key, value in redis.hgetall(KEYS.stats).items()}
        return cls(
            submitted={key: value for key, value in stats.items() if key.startswith("submitted:")},
            ghost_queue=frozenset(redis.zrange(KEYS.queue(GHOST_MODEL), 0, -1)),
            key_jobs=redis.zcard(KEYS.owner_jobs(owner)),
            billed=sorted(redis.keys(KEYS.usage(owner, "*")) + redis.keys(KEYS.tpm(owner, "*"))),
        )

    def unchanged_by(self, later: Ledger) -> bool:
        """Equal, but for ghost jobs an earlier test queued with a deadline, which a reconciler may expire."""
        return later.ghost_queue <= self.ghost_queue and (later.submitted, later.key_jobs, later.billed) == (
            self.submitted,
            self.key_jobs,
            self.billed,
        )


@dataclass
class Caller:
    client: object
    redis: object
    owner: str

    def refused(self, kind: str, body: dict | bytes, status: int = 400) -> dict:
        """POST `body` to every route of `kind`; each answers `status` with one and the same error."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        before = Ledger.read(self.redis, self.owner)
        errors = []
        for path in ROUTES[kind]:
            response = self.client.post(path, data=data, content_type="application/json")
            assert response.status_code == status, (path, response.get_data(as_text=True)[:500])
            envelope = response.get_json()
            assert set(envelope) == {"error"}, envelope
            assert set(envelope["error"]) == {"message", "type", "param", "code"}, envelope
            assert envelope["error"]["type"] == "invalid_request_error"
            errors.append(envelope["error"])
        assert before.unchanged_by(Ledger.read(self.redis, self.owner)), "a refused request was queued or billed"
        assert all(error == errors[0] for error in errors), errors
        return errors[0]


@pytest.fixture(scope="module")
def key(redis_server):
    key, record = KeyStore(redis_server.client()).create(name="hostile-input", rpm=1_000_000)
    return key, record["id"]


@pytest.fixture()
def caller(make_app, key, redis_server) -> Caller:
    return caller_of(make_app(), key, redis_server)


def caller_of(app, key, redis_server) -> Caller:
    app.test_client_class = keyed_client_class(key[0])
    return Caller(app.test_client(), redis_server.client(), key[1])


def chat(**fields) -> dict:
    return {"model": GHOST_MODEL, "messages": HI, **fields}


def completion(**fields) -> dict:
    return {"model": GHOST_MODEL, "prompt": "hi", **fields}


# -- fan-out ------------------------------------------------------------------------------------


def test_twenty_thousand_prompts_with_best_of_128(caller):
    error = caller.refused("completion", completion(prompt=["word"] * 20_000, best_of=128, max_tokens=2000))
    assert (error["param"], error["code"]) == ("prompt", "too_many_sequences")
    assert "20000 prompt(s) × 128 sample(s)" in error["message"] and "2560000" in error["message"]
    assert "at most 256" in error["message"]


@pytest.mark.parametrize(
    ("fields", "param", "product"),
    [
        ({"prompt": ["a"] * 20, "n": 20}, "n", 400),
        ({"prompt": ["a"] * 3, "best_of": 100}, "best_of", 300),
        ({"prompt": ["a"] * 3, "n": 90, "best_of": 100}, "best_of", 300),
        ({"prompt": [[1, 2]] * 257}, "prompt", 257),
    ],
)
def test_the_factor_that_made_it_too_big_is_named(caller, fields, param, product):
    error = caller.refused("completion", completion(**fields))
    assert (error["param"], error["code"]) == (param, "too_many_sequences")
    assert f"= {product} sequences" in error["message"]


def test_chat_counts_as_one_prompt(make_app, key, redis_server):
    caller = caller_of(make_app(max_sequences_per_request=4), key, redis_server)
    error = caller.refused("chat", chat(n=5))
    assert (error["param"], error["code"]) == ("n", "too_many_sequences")
    assert "1 prompt(s) × 5 sample(s)" in error["message"] and "at most 4" in error["message"]
    accepted = caller.client.post("/queue/chat/completions", json=chat(n=4, max_tokens=1))
    assert accepted.status_code == 202, accepted.get_data(as_text=True)
    assert caller.client.delete(f"/queue/jobs/{accepted.get_json()['id']}").status_code == 200


@pytest.mark.parametrize(("field", "value"), [("best_of", 10**9), ("n", 10**9), ("best_of", 129), ("n", 0)])
def test_huge_n_or_best_of(caller, field, value):
    for kind, body in (("completion", completion(**{field: value})), ("chat", chat(**{field: value}))):
        error = caller.refused(kind, body)
        assert (error["param"], error["code"]) == (field, "invalid_value")


# -- sampling sizes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body", "said"),
    [
        ("completion", completion(max_tokens=4, min_tokens=5), "max_tokens (4, as requested)"),
        ("completion", completion(min_tokens=17), "max_tokens (16, the default)"),
        ("chat", chat(max_completion_tokens=3, min_tokens=4), "max_tokens (3, as requested)"),
        ("chat", chat(min_tokens=5000), "what the context leaves after the messages"),
    ],
)
def test_min_tokens_must_be_reachable(caller, kind, body, said):
    error = caller.refused(kind, body)
    assert error["param"] == "min_tokens" and said in error["message"], error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stop", ["s"] * 17),
        ("stop", "x" * (MAX_STOP_CHARS + 1)),
        ("stop", ["ok", "x" * (MAX_STOP_CHARS + 1)]),
        ("stop", ""),
        ("stop_token_ids", [2] * (MAX_STOP_TOKEN_IDS + 1)),
        ("logit_bias", {str(i): 1 for i in range(MAX_LOGIT_BIAS + 1)}),
        ("bad_words", ["w"] * (MAX_BAD_WORDS + 1)),
        ("bad_words", ["x" * (MAX_STOP_CHARS + 1)]),
        ("top_k", 2**63),
        ("stream_interval", 2**64),
        ("allowed_token_ids", [0] * (VOCAB + 1)),
    ],
)
def test_oversized_sampling_fields(caller, field, value):
    for kind, body in (("completion", completion(**{field: value})), ("chat", chat(**{field: value}))):
        assert caller.refused(kind, body)["param"].split("[")[0] == field


def test_stop_strings_need_detokenize(caller):
    assert caller.refused("completion", completion(stop=["."], detokenize=False))["param"] == "stop"


# -- token ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("logit_bias", {"-1": 5}),
        ("logit_bias", {"²": 5}),
        ("logit_bias", {str(VOCAB): 5}),
        ("stop_token_ids", [-1]),
        ("stop_token_ids", [VOCAB]),
        ("allowed_token_ids", [-1]),
        ("allowed_token_ids", [VOCAB + 7]),
        ("prompt", [5, -1]),
        ("prompt", [[5], [VOCAB]]),
    ],
)
def test_token_ids_must_be_in_the_vocabulary(caller, field, value):
    error = caller.refused("completion", completion(**{field: value}))
    assert error["param"].split("[")[0] == field, error


# -- the JSON itself ------------------------------------------------------------------------------


def test_json_nested_a_hundred_thousand_levels(caller):
    for kind in ("chat", "completion", "embedding"):
        error = caller.refused(kind, b"[" * 100_000 + b"]" * 100_000)
        assert error["code"] == "invalid_json" and "nested too deeply" in error["message"]
        assert caller.refused(kind, b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")["code"] == "invalid_json"


def test_json_nested_deeper_than_64_levels_that_python_could_decode(caller):
    nested: dict = {}
    for _ in range(70):
        nested = {"a": nested}
    error = caller.refused("completion", completion(metadata=nested))
    assert (error["param"], error["code"]) == ("metadata", "invalid_json")
    assert "at most 64 levels" in error["message"]


def test_a_body_that_is_not_json(caller):
    for body in (b"{nope", b'{"n": ' + b"9" * 5000 + b"}", b'"\xff"', b"[1, 2]"):
        assert caller.refused("completion", body)["code"] == "invalid_json"


@pytest.mark.parametrize(
    ("kind", "body", "param"),
    [
        ("chat", chat(messages=[{"role": "user", "content": "a\ud800b"}]), "messages[0].content"),
        ("chat", chat(messages=[*HI, {"role": "user", "content": "x", "name": "\udfff"}]), "messages[1].name"),
        (
            "chat",
            chat(messages=[{"role": "user", "content": [{"type": "text", "text": "\ud83d"}]}]),
            "messages[0].content[0].text",
        ),
        ("completion", completion(prompt="\ud800"), "prompt"),
        ("completion", completion(prompt=["fine", "bad \udc00"]), "prompt[1]"),
        ("completion", completion(stop=["ok", "\ud800"]), "stop[1]"),
        ("chat", chat(bad_words=["\ud800"]), "bad_words[0]"),
        ("chat", {"model": "\ud800", "messages": HI}, "model"),
        ("chat", chat(metadata={"tag": {"\ud800": 1}}), "metadata.tag"),
        ("embedding", {"model": EMBED_MODEL, "input": ["ok", "\ud800"]}, "input[1]"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(caller, kind, body, param):
    error = caller.refused(kind, body)
    assert (error["param"], error["code"]) == (param, "invalid_value")
    assert "lone surrogate" in error["message"]


def test_a_surrogate_pair_is_text(caller):
    """`\\ud83d\\ude00` is one emoji, not two lone surrogates: it reaches the tokenizer and is counted."""
    response = caller.client.post("/utils/token_counter", json={"model": GHOST_MODEL, "prompt": "\U0001f600"})
    assert response.status_code == 200 and response.get_json()["total_tokens"] > 0
    refused = caller.client.post(
        "/utils/token_counter", data=b'{"model": "ghost-model", "prompt": "\\ud83d"}', content_type="application/json"
    )
    assert refused.status_code == 400 and refused.get_json()["error"]["param"] == "prompt"

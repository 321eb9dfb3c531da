"""The protocol objects: what a job request stores, and the OpenAI shapes built from engine outputs."""

from tasks.protocol.bodies import completion_body, stream_chunk, usage_chunk
from tasks.protocol.requests import EmbeddingRequest, GenerationRequest, request_from_json
from workers.outputs import Choice, Delta, PromptResult, TokenLogprob, select_best
from workers.sampling import Sampling


def generation(endpoint="completion", **kwargs):
    return GenerationRequest(endpoint=endpoint, model="m", created=1, prompts=[[1, 2]], **kwargs)


def test_multi_prompt_choices_are_numbered_like_openai():
    request = generation(sampling=Sampling(n=2))
    results = [
        PromptResult(3, [Choice(0, "a", [1], "stop"), Choice(1, "b", [1, 2], "stop")]),
        PromptResult(4, [Choice(0, "c", [1], "length"), Choice(1, "d", [], "stop")]),
    ]
    body = completion_body("job_x", request, results, computed=4)
    assert body["object"] == "text_completion" and body["id"] == "cmpl-x"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in body["choices"]] == ["a", "b", "c", "d"]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}
    assert "system_fingerprint" not in body  # OpenAI leaves it out rather than sending null


def test_usage_bills_every_computed_token_not_only_the_kept_samples():
    request = generation(sampling=Sampling(n=1, best_of=3))
    kept = select_best([Choice(0, "a", [1], "stop", -3.0), Choice(1, "b", [1, 2], "stop", -1.0)], 1)
    body = completion_body("job_x", request, [PromptResult(2, kept)], computed=5)
    assert [c["text"] for c in body["choices"]] == ["b"] and body["choices"][0]["index"] == 0
    assert body["usage"]["completion_tokens"] == 5


def test_chat_logprobs_shape():
    entries = [TokenLogprob("Hi", -0.5, [("Hi", -0.5), ("Yo", -1.0)])]
    request = generation("chat", sampling=Sampling(logprobs=1))
    body = completion_body("job_y", request, [PromptResult(1, [Choice(0, "Hi", [5], "stop", None, entries)])], 1)
    assert body["object"] == "chat.completion" and body["id"] == "chatcmpl-y"
    assert body["choices"][0]["logprobs"] == {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.5,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}],
            }
        ],
        "refusal": None,
    }
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi", "refusal": None}


def test_echo_with_logprobs_scores_the_prompt_first():
    request = generation(
        sampling=Sampling(logprobs=1, prompt_logprobs=1, max_tokens=1), echo=["Hello"], echo_first_tokens=["He"]
    )
    prompt = [TokenLogprob("", None), TokenLogprob("llo", -2.0, [("llo", -2.0)])]
    generated = [TokenLogprob("!", -0.1, [("!", -0.1)])]
    result = PromptResult(2, [Choice(0, "!", [7], "length", None, generated)], prompt)
    choice = completion_body("job_e", request, [result], 1)["choices"][0]
    assert choice["text"] == "Hello!"
    assert choice["logprobs"] == {
        "tokens": ["He", "llo", "!"],
        "token_logprobs": [None, -2.0, -0.1],
        "top_logprobs": [None, {"llo": -2.0}, {"!": -0.1}],
        "text_offset": [0, 2, 5],
    }


def test_first_chat_chunk_carries_the_role_and_usage_is_null_until_the_end():
    request = generation("chat", include_usage=True, stream=True)
    first = stream_chunk("job_z", request, 0, Choice(0, "a", [1]), True)
    later = stream_chunk("job_z", request, 0, Choice(0, "b", [2], "stop"), False)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "a"}
    assert later["choices"][0]["delta"] == {"content": "b"} and later["choices"][0]["finish_reason"] == "stop"
    assert first["usage"] is None and first["object"] == "chat.completion.chunk"
    last = usage_chunk("job_z", request, {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert last["choices"] == [] and last["usage"]["total_tokens"] == 3


def test_requests_survive_the_job_record():
    sampling = Sampling(n=2, stop=("x",), logit_bias=((5, -1.0),), seed=7, logprobs=2)
    chat = generation("chat", sampling=sampling, stream=True, include_usage=True)
    assert request_from_json(chat.to_json()) == chat
    embed = EmbeddingRequest(model="e", created=1, prompts=[[1]], encoding_format="base64")
    assert request_from_json(embed.to_json()) == embed


def test_deltas_survive_the_event_stream():
    delta = Delta(1, Choice(2, "hé", [9, 10], "length", -1.5, [TokenLogprob("h", -0.5, [("h", -0.5)])]))
    back = Delta.from_json(delta.to_json())
    assert (back.prompt_index, back.choice.index, back.choice.text) == (1, 2, "hé")
    assert back.choice.finish_reason == "length" and back.choice.logprobs == delta.choice.logprobs


def test_a_request_costs_prompts_times_samples():
    request = GenerationRequest("completion", "m", 1, [[1], [2], [3]], Sampling(n=2, best_of=5))
    assert request.sequences == 15

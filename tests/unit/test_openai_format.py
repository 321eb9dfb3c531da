from tasks.openai_format import completion_body, stream_chunk


def choice(index, text, tokens, reason="stop", logprobs=None):
    return {"index": index, "text": text, "token_ids": tokens, "finish_reason": reason, "logprobs": logprobs}


def test_multi_prompt_choices_are_numbered_like_openai():
    request = {"endpoint": "completion", "model": "m", "params": {"n": 2}, "logprobs": None}
    results = [
        {"prompt_tokens": 3, "choices": [choice(0, "a", [1]), choice(1, "b", [1, 2])]},
        {"prompt_tokens": 4, "choices": [choice(0, "c", [1], "length"), choice(1, "d", [])]},
    ]
    body = completion_body(job_id="job_x", request=request, created=1, results=results)
    assert body["object"] == "text_completion" and body["id"] == "cmpl-x"
    assert [c["index"] for c in body["choices"]] == [0, 1, 2, 3]
    assert [c["text"] for c in body["choices"]] == ["a", "b", "c", "d"]
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_chat_logprobs_shape():
    entries = [
        {
            "token_id": 5,
            "token": "Hi",
            "logprob": -0.5,
            "top": [{"token_id": 5, "token": "Hi", "logprob": -0.5}, {"token_id": 6, "token": "Yo", "logprob": -1}],
        }
    ]
    request = {"endpoint": "chat", "model": "m", "params": {"n": 1}, "top_logprobs": 1}
    body = completion_body(
        job_id="job_y",
        request=request,
        created=1,
        results=[{"prompt_tokens": 1, "choices": [choice(0, "Hi", [5], logprobs=entries)]}],
    )
    content = body["choices"][0]["logprobs"]["content"]
    assert content == [
        {
            "token": "Hi",
            "logprob": -0.5,
            "bytes": [72, 105],
            "top_logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [72, 105]}],
        }
    ]
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hi"}


def test_first_chat_chunk_carries_the_role():
    request = {"endpoint": "chat", "model": "m", "created": 1, "params": {"n": 1}}
    first = stream_chunk(job_id="job_z", request=request, index=0, choice=choice(0, "a", [1], None), first=True)
    later = stream_chunk(job_id="job_z", request=request, index=0, choice=choice(0, "b", [2]), first=False)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "a"}
    assert later["choices"][0]["delta"] == {"content": "b"} and later["choices"][0]["finish_reason"] == "stop"

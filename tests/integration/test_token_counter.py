"""`/utils/token_counter` counts what the completion endpoints bill, with the model's own tokenizer."""

import pytest

from tests.harness import CHAT_MODEL, EMBED_MODEL

CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": [{"type": "text", "text": "Ça va? "}, {"type": "text", "text": "你好 🚀"}]},
    ],
]


def count(client, **body):
    response = client.post("/utils/token_counter", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_messages_count_equals_chat_prompt_tokens(client, messages):
    chat = client.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": messages, "max_tokens": 1})
    assert chat.status_code == 200, chat.get_data(as_text=True)
    counted = count(client, model=CHAT_MODEL, messages=messages)
    assert counted == {
        "total_tokens": chat.get_json()["usage"]["prompt_tokens"],
        "request_model": CHAT_MODEL,
        "model_used": CHAT_MODEL,
        "tokenizer_type": "huggingface_tokenizer",
    }


def test_prompt_count_equals_completion_prompt_tokens(client):
    prompt = "The capital of France is"
    completion = client.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": prompt, "max_tokens": 1})
    assert completion.status_code == 200, completion.get_data(as_text=True)
    assert (
        count(client, model=CHAT_MODEL, prompt=prompt)["total_tokens"]
        == completion.get_json()["usage"]["prompt_tokens"]
    )


def test_counts_with_the_models_own_tokenizer(bare_client):
    import transformers  # installed with the engine (`.[cpu]`): at this level a skip would hide the check

    from tasks.settings import Settings

    specs = Settings.load().models
    text = "Tokenizers differ: ünïcödé, 你好, and émoji 🚀."
    for model in (CHAT_MODEL, EMBED_MODEL):
        reference = transformers.AutoTokenizer.from_pretrained(specs[model].tokenizer_path)
        assert count(bare_client, model=model, prompt=text)["total_tokens"] == len(reference(text)["input_ids"])
    assert count(bare_client, model=CHAT_MODEL, prompt=text) != count(bare_client, model=EMBED_MODEL, prompt=text)


def test_no_worker_is_needed(bare_client):
    # ghost-model is configured but never served: counting still works (it happens in the API).
    assert count(bare_client, model="ghost-model", prompt="hello")["total_tokens"] > 0


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": CHAT_MODEL}, 400, "prompt"),
        ({"model": CHAT_MODEL, "prompt": None, "messages": None}, 400, "prompt"),
        ({"model": CHAT_MODEL, "prompt": "x", "messages": [{"role": "user", "content": "x"}]}, 400, "messages"),
        ({"model": CHAT_MODEL, "messages": []}, 400, "messages"),
        ({"prompt": "x"}, 400, "model"),
        ({"model": "nope", "prompt": "x"}, 404, "model"),
        ({"model": EMBED_MODEL, "messages": [{"role": "user", "content": "x"}]}, 400, "messages"),
    ],
)
def test_bad_requests(bare_client, body, status, param):
    response = bare_client.post("/utils/token_counter", json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert error["param"] == param and set(error) == {"message", "type", "param", "code"}

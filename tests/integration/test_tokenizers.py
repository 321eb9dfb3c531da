"""The API's tokeniser must count exactly what the engine's tokenizer counts.

Integration level: it compares against the prepared model's own files and
transformers' tokenizer (`make models`). The model-free logic of
ModelTokenizer is covered in tests/unit/test_model_tokenizer.py.
"""

import pytest

from app.tokenizers import ModelTokenizer
from tasks.settings import Settings

SPEC = Settings.load().models["smollm2-135m-instruct"]
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Ça va? 你好"},
    ],
]


@pytest.fixture(scope="module")
def reference():
    import transformers  # installed with the engine (`.[cpu]`): at this level a skip would hide the check

    return transformers.AutoTokenizer.from_pretrained(SPEC.local_path)


@pytest.fixture(scope="module")
def ours():
    return ModelTokenizer(SPEC.local_path)


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_chat_template_matches_transformers(ours, reference, messages):
    expected = reference.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert ours.render_chat(messages) == expected
    assert ours.encode_chat(messages) == reference(expected, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("text", ["The capital of France is", "  spaces\nand lines ", "émoji 🚀"])
def test_plain_prompts_match_transformers(ours, reference, text):
    assert ours.encode(text) == reference(text)["input_ids"]

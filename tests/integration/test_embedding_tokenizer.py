"""The API's tokeniser must give the embedding model exactly the ids its own BertTokenizer gives.

MiniLM's tokenizer.json pins truncation and padding to 128 tokens; counting
with it as is would pad every input to 128 and hide inputs that are too long.
Integration level: it needs the prepared model (`make models`).
"""

import pytest

from app.tokenizers import ModelTokenizer
from tasks.settings import Settings

SPEC = Settings.load().models["all-minilm-l6-v2"]
TEXTS = ["A man is eating food.", "  Spaces\nand LINES ", "Ça va? 你好 émoji 🚀", "word " * 300]


@pytest.fixture(scope="module")
def reference():
    import transformers  # installed with the engine (`.[cpu]`): at this level a skip would hide the check

    return transformers.AutoTokenizer.from_pretrained(SPEC.local_path)


@pytest.fixture(scope="module")
def ours():
    return ModelTokenizer(SPEC.tokenizer_path)


@pytest.mark.parametrize("text", TEXTS)
def test_ids_match_the_bert_tokenizer(ours, reference, text):
    expected = reference(text, add_special_tokens=True)["input_ids"]
    assert ours.encode(text) == expected
    assert expected[0] == reference.cls_token_id and expected[-1] == reference.sep_token_id


def test_long_inputs_are_not_truncated_or_padded(ours):
    assert len(ours.encode("word " * 300)) == 302
    assert len(ours.encode("hi")) == 3

"""ModelTokenizer's own logic, on a tiny tokenizer built here: no prepared model, no transformers.

What it must get right whatever the model: the chat template renders as
transformers renders it (trim/lstrip blocks, special tokens from the config,
the named default template, the template file before the config), chat ids
carry no second set of special tokens, a tokenizer.json that pins truncation
or padding does not change a count, and a template can neither mutate its
input nor fail silently. That these match the real models' tokenizers is
checked in tests/integration/test_tokenizers.py and test_embedding_tokenizer.py.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from app.tokenizers import ModelTokenizer, TemplateError, TokenizerCache
from tasks.models import ModelSpec

SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CORPUS = ["What is the capital of France?", "The capital of France is Paris.", "Be brief. Hi! Hello!"] * 20
# Block tags on their own lines, indented: trim_blocks and lstrip_blocks must swallow that layout, as in transformers.
CHATML = """{% for message in messages %}
    {% if loop.first %}
{{ bos_token }}{% endif %}
<|im_start|>{{ message['role'] }}
{{ message['content'] }}<|im_end|>
{% endfor %}
{% if add_generation_prompt %}
<|im_start|>assistant
{% endif %}"""
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Ça va? 你好"}]
RENDERED = (
    "<s><|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nÇa va? 你好<|im_end|>\n<|im_start|>assistant\n"
)


def build_tokenizer() -> Tokenizer:
    """A byte-level BPE trained on a few sentences: any text encodes, and decodes back exactly."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(CORPUS, trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return tokenizer


def write_model(directory: Path, *, pinned: bool = False, template_file: str | None = None, **config) -> Path:
    """tokenizer.json (+ pinned truncation/padding, as MiniLM ships), tokenizer_config.json, chat_template.jinja."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    if pinned:
        tokenizer.enable_truncation(max_length=4)
        tokenizer.enable_padding(length=32, pad_id=tokenizer.token_to_id("<pad>"), pad_token="<pad>")
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    if template_file is not None:
        (directory / "chat_template.jinja").write_text(template_file)
    return directory


@pytest.fixture(scope="module")
def reference() -> Tokenizer:
    return build_tokenizer()


@pytest.fixture()
def chatml(tmp_path) -> ModelTokenizer:
    # bos as a plain string, eos in the AddedToken form some configs use: both must reach the template.
    eos = {"content": "<|im_end|>", "lstrip": False, "rstrip": False, "special": True}
    return ModelTokenizer(str(write_model(tmp_path / "chatml", chat_template=CHATML, bos_token="<s>", eos_token=eos)))


def test_chat_template_renders_like_transformers(chatml):
    assert chatml.render_chat(MESSAGES) == RENDERED
    assert chatml.render_chat(MESSAGES, add_generation_prompt=False) == RENDERED.removesuffix("<|im_start|>assistant\n")


def test_special_tokens_of_the_config_reach_the_template(tmp_path):
    template = "{{ bos_token }}|{{ eos_token }}|{% if pad_token %}pad{% endif %}"
    config = {"bos_token": "<s>", "eos_token": {"content": "</s>"}, "pad_token": None, "chat_template": template}
    tokenizer = ModelTokenizer(str(write_model(tmp_path, **config)))
    assert tokenizer.render_chat(MESSAGES) == "<s>|</s>|"


def test_chat_ids_carry_the_templates_special_tokens_once(chatml, reference):
    ids = chatml.encode_chat(MESSAGES)
    bos, start, end = (reference.token_to_id(t) for t in ("<s>", "<|im_start|>", "<|im_end|>"))
    assert ids == reference.encode(RENDERED, add_special_tokens=False).ids
    assert ids[0] == bos and ids.count(bos) == 1  # the template's <s>, not a second one from the post-processor
    assert ids.count(start) == 3 and ids.count(end) == 2  # each special token is one id, never split into pieces
    assert chatml.encode(RENDERED)[:2] == [bos, bos]  # what encode_chat must avoid: plain encode adds its own


def test_plain_encode_adds_the_models_special_tokens(chatml, reference):
    text = "The capital of France is"
    assert chatml.encode(text) == reference.encode(text).ids
    assert chatml.encode(text)[0] == reference.token_to_id("<s>")
    assert chatml.encode(text, add_special_tokens=False) == reference.encode(text, add_special_tokens=False).ids


def test_decode_gives_back_the_rendered_text_special_tokens_included(chatml):
    assert chatml.decode(chatml.encode_chat(MESSAGES)) == RENDERED


def test_pinned_truncation_and_padding_do_not_change_a_count(tmp_path, reference):
    tokenizer = ModelTokenizer(str(write_model(tmp_path, pinned=True)))
    pinned = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    long_text = "The capital of France is Paris. " * 10
    assert len(pinned.encode(long_text).ids) == len(pinned.encode("Hi").ids) == 32  # the file really pins them
    assert tokenizer.encode(long_text) == reference.encode(long_text).ids
    assert len(tokenizer.encode(long_text)) > 32
    assert tokenizer.encode("Hi") == reference.encode("Hi").ids  # no padding to 32 either
    assert reference.token_to_id("<pad>") not in tokenizer.encode("Hi")


def test_the_template_file_wins_over_the_config(tmp_path):
    directory = write_model(tmp_path, template_file="file:{{ messages[0].content }}", chat_template="config")
    assert ModelTokenizer(str(directory)).render_chat(MESSAGES) == "file:Be brief."


def test_of_named_templates_the_default_one_is_used(tmp_path):
    named = [
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "default:{{ messages | length }}"},
    ]
    assert ModelTokenizer(str(write_model(tmp_path, chat_template=named))).render_chat(MESSAGES) == "default:2"


def test_without_a_template_chat_is_refused_but_text_still_counts(tmp_path, reference):
    tokenizer = ModelTokenizer(str(write_model(tmp_path)))
    with pytest.raises(TemplateError, match="no chat template"):
        tokenizer.encode_chat(MESSAGES)
    assert tokenizer.encode("Hello!") == reference.encode("Hello!").ids


def test_a_template_refuses_through_raise_exception(tmp_path):
    refusal = "{{ raise_exception('the first message must be the user') }}"
    template = "{% if messages[0]['role'] != 'user' %}" + refusal + "{% endif %}"
    tokenizer = ModelTokenizer(str(write_model(tmp_path, chat_template=template)))
    with pytest.raises(TemplateError, match="the first message must be the user") as info:
        tokenizer.render_chat(MESSAGES)
    assert isinstance(info.value, ValueError)  # the API answers it as a 400, like any invalid body
    assert tokenizer.render_chat(MESSAGES[1:]) == ""


def test_the_sandbox_keeps_messages_immutable(tmp_path):
    tokenizer = ModelTokenizer(str(write_model(tmp_path, chat_template="{{ messages.append({}) }}")))
    messages = [dict(m) for m in MESSAGES]
    with pytest.raises(SecurityError):
        tokenizer.render_chat(messages)
    assert messages == MESSAGES


def test_template_helpers_tojson_strftime_and_loop_controls(tmp_path):
    template = (
        "{{ messages[1] | tojson }}|{{ strftime_now('%Y') }}|"
        "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}"
    )
    tokenizer = ModelTokenizer(str(write_model(tmp_path, chat_template=template)))
    rendered = tokenizer.render_chat(MESSAGES)
    data, year, roles = rendered.split("|")
    assert data == '{"role": "user", "content": "Ça va? 你好"}'  # unescaped, as transformers' tojson writes it
    assert year == time.strftime("%Y")
    assert roles == "system"


def test_a_folder_without_tokenizer_json_is_refused(tmp_path):
    (tmp_path / "tokenizer_config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        ModelTokenizer(str(tmp_path))


def test_the_cache_loads_each_model_once_for_all_threads(tmp_path):
    specs = [
        ModelSpec(id=name, path=str(path), local_path=str(path))
        for name, path in (("a", write_model(tmp_path / "a")), ("b", write_model(tmp_path / "b")))
    ]
    cache = TokenizerCache()
    seen: list[ModelTokenizer] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        seen.append(cache.get(specs[0]))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8 and all(t is seen[0] for t in seen)
    assert cache.get(specs[1]) is not seen[0] and cache.get(specs[1]) is cache.get(specs[1])

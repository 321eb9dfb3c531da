import pytest

from tasks.config import load_config
from workers.models import load_models


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("INFERQ_WORKER_WAIT_SECONDS", "2.5")
    monkeypatch.setenv("INFERQ_MAX_CONTENT_LENGTH", "10")
    config = load_config()
    assert config["WORKER_WAIT_SECONDS"] == 2.5 and config["MAX_CONTENT_LENGTH"] == 10


def test_caller_overrides_environment(monkeypatch):
    monkeypatch.setenv("INFERQ_REDIS_URL", "redis://env")
    assert load_config({"REDIS_URL": "redis://mine"})["REDIS_URL"] == "redis://mine"


def test_each_call_builds_fresh_dicts():
    first, second = load_config(), load_config()
    first["REDIS_URL"] = "changed"
    assert second["REDIS_URL"] != "changed"


def test_default_models_are_the_embedded_ones():
    models = load_config()["MODELS"]
    chat = models["smollm2-135m-instruct"]
    assert chat.kind == "generate" and chat.max_model_len == 2048 and chat.queue == "model.smollm2-135m-instruct"
    assert chat.price.prompt > 0 and models["all-minilm-l6-v2"].kind == "embed"


def test_models_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - id: x\n    path: /x\n    colour: blue\n")
    with pytest.raises(ValueError, match="colour"):
        load_models(path)

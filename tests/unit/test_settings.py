import dataclasses
import re
from pathlib import Path

import pytest

from tasks.models import load_models
from tasks.settings import REPO_ROOT, Settings, markdown_table


def test_environment_overrides_defaults(monkeypatch):
    monkeypatch.setenv("INFERQ_WORKER_WAIT_SECONDS", "2.5")
    monkeypatch.setenv("INFERQ_MAX_CONTENT_LENGTH", "10")
    settings = Settings.load()
    assert settings.worker_wait_seconds == 2.5 and settings.max_content_length == 10


def test_caller_overrides_environment(monkeypatch):
    monkeypatch.setenv("INFERQ_REDIS_URL", "redis://env")
    assert Settings.load(redis_url="redis://mine").redis_url == "redis://mine"
    assert Settings.load().redis_url == "redis://env"


def test_unknown_override_is_refused():
    with pytest.raises(TypeError, match="colour"):
        Settings.load(colour="blue")


def test_settings_are_immutable():
    settings = Settings.load()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.redis_url = "changed"  # type: ignore[misc]
    assert settings.replace(redis_url="redis://other").redis_url == "redis://other"


def test_default_models_are_the_embedded_ones(tmp_path):
    models = Settings.load(model_cache=str(tmp_path)).models
    chat = models["smollm2-135m-instruct"]
    assert chat.kind == "generate" and chat.max_model_len == 2048 and chat.queue == "model.smollm2-135m-instruct"
    assert chat.price.prompt > 0 and models["all-minilm-l6-v2"].kind == "embed"
    assert chat.local_path == str(tmp_path / "smollm2-135m-instruct")
    assert chat.engine_options()["model"] == chat.local_path


def test_models_file_rejects_unknown_keys(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - id: x\n    path: /x\n    colour: blue\n")
    with pytest.raises(ValueError, match="colour"):
        load_models(path, str(tmp_path))


def test_readme_configuration_table_is_generated_from_the_settings():
    readme = (REPO_ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate it: python -m tasks.settings"


def test_only_the_settings_module_reads_the_environment():
    readers = []
    for folder in ("app", "tasks", "workers"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if re.search(r"os\.environ|os\.getenv", path.read_text()):
                readers.append(str(path.relative_to(REPO_ROOT)))
    assert readers == [str(Path("tasks") / "settings.py")]


def test_each_device_gets_its_own_engine_options(tmp_path):
    chat = Settings.load(model_cache=str(tmp_path)).models["smollm2-135m-instruct"]
    cpu, gpu = chat.engine_options("cpu"), chat.engine_options("gpu")
    assert cpu["dtype"] == "float32" and cpu["enable_chunked_prefill"] is False and "kv_cache_memory_bytes" in cpu
    assert gpu["dtype"] == "auto" and gpu["enforce_eager"] is False and "kv_cache_memory_bytes" not in gpu
    assert cpu["max_num_seqs"] == gpu["max_num_seqs"] == chat.max_concurrency


def test_models_file_rejects_unknown_devices(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  - id: x\n    path: /x\n    devices:\n      tpu: {}\n")
    with pytest.raises(ValueError, match="tpu"):
        load_models(path, str(tmp_path))

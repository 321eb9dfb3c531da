"""`inferq`'s argument handling: each command gets what it was given, or a usage error.

Nothing here starts a process or touches Redis: what a command would start
(Celery, gunicorn, Flower, the model builder, the key store) is replaced by a
recorder, so these check only the CLI's own decisions.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
from click.testing import CliRunner

from app.cli import cli
from tasks.settings import REPO_ROOT

MODELS = str(REPO_ROOT / "config" / "models.yaml")
CHAT = "smollm2-135m-instruct"


@pytest.fixture()
def invoke(monkeypatch, tmp_path):
    """Run `inferq ARGS` with a known configuration; extra INFERQ_* variables as keywords."""
    for name in list(os.environ):
        if name.startswith("INFERQ_"):
            monkeypatch.delenv(name)

    def run(*args: str, **env: str):
        variables = {"INFERQ_MODELS_FILE": MODELS, "INFERQ_MODEL_CACHE": str(tmp_path / "models"), **env}
        return CliRunner().invoke(cli, list(args), env=variables)

    return run


class Recorder:
    def __init__(self, result: Any = None) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.result = result

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.result


def test_help_lists_every_command(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("worker", "api", "flower", "prepare-models", "keys"):
        assert command in result.output


def test_no_command_is_a_usage_error(invoke):
    result = invoke()
    assert result.exit_code == 2 and "Usage: inferq" in result.output


def test_worker_passes_its_options_to_the_worker_process(invoke, monkeypatch):
    from tasks import worker as worker_process

    run = Recorder()
    monkeypatch.setattr(worker_process, "run", run)
    result = invoke("worker", "--model", CHAT, "--name", "w1", "--concurrency", "3", "--loglevel", "debug")
    assert result.exit_code == 0, result.output
    [(args, kwargs)] = run.calls
    config, spec = args
    assert spec.id == CHAT and config.models_file == MODELS
    assert kwargs == {"name": "w1", "concurrency": 3, "loglevel": "DEBUG"}


def test_worker_defaults_come_from_the_settings(invoke, monkeypatch):
    from tasks import worker as worker_process

    run = Recorder()
    monkeypatch.setattr(worker_process, "run", run)
    assert invoke("worker", "--model", CHAT, INFERQ_LOG_LEVEL="warning").exit_code == 0
    [(_args, kwargs)] = run.calls
    assert kwargs == {"name": None, "concurrency": None, "loglevel": "WARNING"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "unknown model 'nope'; configured: smollm2-135m-instruct, all-minilm-l6-v2"),
        ([], "Missing option '--model'"),
        (["--model", CHAT, "--concurrency", "0"], "--concurrency"),
        (["--model", CHAT, "--loglevel", "loud"], "--loglevel"),
    ],
)
def test_worker_refuses_bad_arguments_before_starting(invoke, monkeypatch, args, message):
    from tasks import worker as worker_process

    run = Recorder()
    monkeypatch.setattr(worker_process, "run", run)
    result = invoke("worker", *args)
    assert result.exit_code == 2 and message in result.output and run.calls == []


def test_api_hands_its_arguments_to_gunicorn(invoke, monkeypatch):
    execvp = Recorder()
    monkeypatch.setattr(os, "execvp", execvp)
    assert invoke("api", "--bind", "0.0.0.0:9000", "--workers", "4").exit_code == 0
    [((program, argv), _)] = execvp.calls
    assert program == sys.executable
    assert argv == [
        sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
        "--bind", "0.0.0.0:9000", "--workers", "4", "app.wsgi:app",
    ]  # fmt: skip


class FakeControl:
    def __init__(self) -> None:
        self.events_enabled = False

    def enable_events(self, **_: object) -> None:
        self.events_enabled = True


class FakeCelery:
    def __init__(self) -> None:
        self.started: list[str] | None = None
        self.control = FakeControl()

    def start(self, argv: list[str]) -> None:
        assert self.control.events_enabled, "workers' task events are turned on before Flower listens"
        self.started = argv


def flower_with(invoke, monkeypatch, **env: str) -> tuple[Any, list[str]]:
    import tasks.celery_app

    celery = FakeCelery()
    monkeypatch.setattr(tasks.celery_app, "create_celery", lambda settings: celery)
    result = invoke("flower", **env)
    assert result.exit_code == 0, result.output
    return result, celery.started


def test_flower_uses_the_configured_address_and_credentials(invoke, monkeypatch):
    result, argv = flower_with(invoke, monkeypatch, INFERQ_FLOWER_BASIC_AUTH="ops:secret", INFERQ_FLOWER_PORT="6000")
    assert argv == ["flower", "--address=127.0.0.1", "--port=6000", "--basic-auth=ops:secret",
                    "--purge_offline_workers=60"]  # fmt: skip
    assert "secret" not in result.output


def test_flower_without_credentials_makes_some_up_and_prints_them_once(invoke, monkeypatch):
    result, argv = flower_with(invoke, monkeypatch)
    [auth] = [a.removeprefix("--basic-auth=") for a in argv if a.startswith("--basic-auth=")]
    user, _, password = auth.partition(":")
    assert user == "admin" and len(password) >= 24
    assert result.output.count(auth) == 1 and "http://127.0.0.1:5555" in result.output


def test_prepare_models_builds_what_is_asked_into_the_model_cache(invoke, monkeypatch, tmp_path):
    import app.cli.serve

    prepare = Recorder({CHAT: tmp_path / "models" / CHAT})
    monkeypatch.setattr(app.cli.serve, "prepare", prepare)
    result = invoke("prepare-models", CHAT)
    assert result.exit_code == 0, result.output
    assert prepare.calls == [((tmp_path / "models", [CHAT]), {})]
    assert json.loads(result.output) == {"model": CHAT, "path": str(tmp_path / "models" / CHAT)}

    assert invoke("prepare-models").exit_code == 0
    assert prepare.calls[-1] == ((tmp_path / "models", None), {})  # None: all of them


def test_prepare_models_refuses_an_unknown_model(invoke, monkeypatch):
    import app.cli.serve

    prepare = Recorder({})
    monkeypatch.setattr(app.cli.serve, "prepare", prepare)
    result = invoke("prepare-models", "nope")
    assert result.exit_code == 2 and "'nope' is not one of" in result.output and prepare.calls == []


class FakeKeyStore:
    """The KeyStore's interface over a dict: what the key commands print, without Redis."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}  # key -> record

    def create(self, *, name: str, rpm: int, tpm=None, models=None, expires_at=None):
        key = f"sk-{'x' * 40}{len(self.records):03d}"
        record = {"id": f"key_{len(self.records):016x}", "display": f"sk-…{key[-4:]}", "name": name, "rpm": rpm,
                  "tpm": tpm, "models": models or [], "expires_at": expires_at, "revoked": False}  # fmt: skip
        self.records[key] = record
        return key, record

    def list(self):
        return list(self.records.values())

    def revoke(self, key_id: str) -> bool:
        for record in self.records.values():
            if record["id"] == key_id:
                record["revoked"] = True
                return True
        return False


@pytest.fixture()
def store(monkeypatch):
    import app.cli.keys

    fake = FakeKeyStore()
    monkeypatch.setattr(app.cli.keys, "open_store", lambda config, wait=0.0: fake)
    return fake


def test_keys_create_prints_the_key_once_with_its_limits(invoke, store):
    result = invoke("keys", "create", "--name", "ci", "--rpm", "30", "--tpm", "5000", "--models", CHAT,
                    "--expires-in-days", "7")  # fmt: skip
    assert result.exit_code == 0, result.output
    [(key, record)] = store.records.items()
    assert record["name"] == "ci" and record["rpm"] == 30 and record["tpm"] == 5000 and record["models"] == [CHAT]
    assert record["expires_at"] is not None
    assert result.output.count(key) == 1 and "This is the only time the key is shown" in result.output
    assert f"rpm=30     tpm=5000     models={CHAT}" in result.output and "active" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--name", "x", "--rpm", "5", "--models", "nope,"], "unknown model(s): nope; configured: "),
        (["--name", "x", "--rpm", "0"], "--rpm"),
        (["--name", "x", "--rpm", "5", "--tpm", "0"], "--tpm"),
        (["--rpm", "5"], "Missing option '--name'"),
    ],
)
def test_keys_create_refuses_bad_arguments(invoke, store, args, message):
    result = invoke("keys", "create", *args)
    assert result.exit_code == 2 and message in result.output and store.records == {}


def test_keys_list_and_revoke(invoke, store):
    key, record = store.create(name="team", rpm=60)
    listed = invoke("keys", "list")
    assert listed.exit_code == 0 and record["id"] in listed.output and key not in listed.output
    assert "models=all" in listed.output and "expires=never" in listed.output

    revoked = invoke("keys", "revoke", record["id"])
    assert revoked.exit_code == 0 and revoked.output == f"revoked {record['id']}\n"
    assert "revoked" in invoke("keys", "list").output

    missing = invoke("keys", "revoke", "key_nonexistent")
    assert missing.exit_code == 1 and missing.stderr == "no key with id key_nonexistent\n"


def test_keys_ensure_local_help_says_what_happens_to_a_revoked_key(invoke):
    result = invoke("keys", "ensure-local", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "never print it" in text and "A revoked key stays revoked" in text
    assert "delete the file and run this again" in text and "inferq keys create" in text

"""Levels, and the session-wide real services: one redis-server, one model worker.

Every test lives in the folder of its level, and is marked with it here
(`pytest -m unit`, `-m "integration or e2e"`, …):

- `tests/unit`: no Redis, no model files, no network, no browser (its own
  conftest refuses sockets and hides the model cache);
- `tests/integration`: the real redis-server and a real worker on the real
  engine (or the real model files), called through Flask's test client;
- `tests/e2e`: a real gunicorn, called by real clients (the openai SDK,
  httpx, requests) and by Chromium;
- `tests/chaos`: kills and restarts of workers, engine cores and Redis.
- `tests/cluster`: several hosts (network namespaces, root only): two APIs
  and three workers on one Redis, hosts killed and cut off.

Starting the vLLM engine costs ~25 s on two cores, so every test that needs
an engine shares the same worker; tests that kill workers start their own.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CHAT_MODEL, EMBED_MODEL, RedisServer, ServiceEnv, WorkerProcess, temp_dir, write_models_file

LEVELS = ("unit", "integration", "e2e", "chaos", "cluster")
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    """Mark each test with the level its folder names; a test outside the level folders is an error."""
    for item in items:
        folder = Path(item.path).resolve().relative_to(TESTS).parts[0]
        if folder not in LEVELS:
            raise pytest.UsageError(f"{item.nodeid}: put it under tests/<level>/, one of {', '.join(LEVELS)}")
        item.add_marker(getattr(pytest.mark, folder))


@pytest.fixture(scope="session")
def session_dir():
    directory = temp_dir("inferq-tests-")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def models_file(session_dir):
    return write_models_file(session_dir)


@pytest.fixture(scope="session")
def redis_server(session_dir):
    server = RedisServer(session_dir / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_env(redis_server, models_file, session_dir):
    return ServiceEnv(redis_server.url, models_file, INFERQ_FILES_DIR=str(session_dir / "files"))


@pytest.fixture(scope="session")
def session_workers(service_env):
    """The chat and the embedding worker, launched side by side.

    A start is mostly one process importing vLLM, so two on two cores take
    little longer than one. Each fixture below waits for its own.
    """
    processes = {m: WorkerProcess(service_env, model=m).start(wait=False) for m in (CHAT_MODEL, EMBED_MODEL)}
    yield processes
    for process in processes.values():
        process.stop()


@pytest.fixture(scope="session")
def worker(session_workers):
    process = session_workers[CHAT_MODEL]
    process.wait_live()
    return process


@pytest.fixture(scope="session")
def embedding_worker(session_workers):
    """A worker pinned to the embedding model; request it beside `client` (or e2e's `api_server`)."""
    process = session_workers[EMBED_MODEL]
    process.wait_live()
    return process


@pytest.fixture(scope="session")
def base_config(redis_server, models_file, session_dir):
    from tasks.settings import Settings

    return Settings.load(
        redis_url=redis_server.url,
        models_file=str(models_file),
        worker_wait_seconds=1.0,
        files_dir=str(session_dir / "files"),
    )


@pytest.fixture(scope="session")
def api_key(redis_server):
    """The key every test client sends by default; its limits are too high to bite."""
    from app.auth.keys import KeyStore

    key, _record = KeyStore(redis_server.client()).create(name="tests", rpm=1_000_000)
    return key


def keyed_client_class(key: str):
    """A Flask test client that sends `Authorization: Bearer <key>` unless a request sets its own."""
    from flask.testing import FlaskClient

    class KeyedClient(FlaskClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"

    return KeyedClient


@pytest.fixture()
def make_app(base_config, api_key):
    from app import create_app

    def factory(**overrides):
        app = create_app(base_config.replace(**overrides))
        app.test_client_class = keyed_client_class(api_key)
        return app

    return factory


@pytest.fixture()
def client(make_app, worker):
    """A Flask test client on the real Redis, with a real worker behind it."""
    return make_app().test_client()


@pytest.fixture()
def bare_client(make_app, redis_server):
    """A Flask test client on the real Redis, without waiting for a worker."""
    return make_app().test_client()


@dataclass
class PrivateStack:
    app: Any
    redis: RedisServer
    env: ServiceEnv


@pytest.fixture(scope="module")
def private_stack(session_dir):
    """Its own redis-server and an authenticated app, for tests that stop or kill services."""
    from app import create_app
    from app.auth.keys import KeyStore
    from tasks.settings import Settings

    servers: list[RedisServer] = []

    def make(name: str, **env_vars: str) -> PrivateStack:
        directory = session_dir / name
        directory.mkdir()
        redis_server = RedisServer(directory / "redis").start()
        servers.append(redis_server)
        models_file = write_models_file(directory)
        key, _ = KeyStore(redis_server.client()).create(name=f"{name}-tests", rpm=1_000_000)
        app = create_app(Settings.load(redis_url=redis_server.url, models_file=str(models_file)))
        app.test_client_class = keyed_client_class(key)
        return PrivateStack(app, redis_server, ServiceEnv(redis_server.url, models_file, **env_vars))

    yield make
    for server in servers:
        server.stop()

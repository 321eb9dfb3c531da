"""Session-wide real services: one redis-server, one model worker, one gunicorn.

Starting the vLLM engine costs ~25 s on two cores, so every test that needs
an engine shares the same worker; tests that kill workers start their own.
"""

from __future__ import annotations

import shutil

import pytest

from tests.harness import ApiServer, RedisServer, ServiceEnv, WorkerProcess, temp_dir, write_models_file


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
def service_env(redis_server, models_file):
    return ServiceEnv(redis_server.url, models_file)


@pytest.fixture(scope="session")
def worker(service_env):
    process = WorkerProcess(service_env).start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def api_server(service_env, worker):
    server = ApiServer(service_env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def base_config(redis_server, models_file):
    from tasks.config import load_config

    return load_config({"REDIS_URL": redis_server.url, "MODELS_FILE": str(models_file), "WORKER_WAIT_SECONDS": 1.0})


@pytest.fixture()
def make_app(base_config):
    from app import create_app

    def factory(**overrides):
        return create_app({**base_config, **overrides})

    return factory


@pytest.fixture()
def client(make_app, worker):
    """A Flask test client on the real Redis, with a real worker behind it."""
    return make_app().test_client()


@pytest.fixture()
def bare_client(make_app, redis_server):
    """A Flask test client on the real Redis, without waiting for a worker."""
    return make_app().test_client()

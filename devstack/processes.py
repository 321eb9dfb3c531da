"""Real processes on loopback: redis-server, a model worker, gunicorn.

Nothing here is faked: each class starts the real program on a free loopback
port and stops it; tests that need to kill or restart one do so for real.
See the package docstring for why this lives in `devstack/`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote, urlencode

import redis
import requests
import yaml

__all__ = [
    "ARTIFACTS",
    "CHAT_MODEL",
    "EMBED_MODEL",
    "GHOST_MODEL",
    "REPO",
    "ApiServer",
    "RedisServer",
    "ServiceEnv",
    "TlsFiles",
    "WorkerProcess",
    "free_port",
    "temp_dir",
    "wait_until",
    "write_models_file",
]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("INFERQ_TEST_ARTIFACTS", REPO / "test-artifacts"))
CHAT_MODEL = "smollm2-135m-instruct"
EMBED_MODEL = "all-minilm-l6-v2"
GHOST_MODEL = "ghost-model"  # configured, but no worker ever serves it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2, process: subprocess.Popen | None = None):
    """Poll `predicate` until it returns something truthy, and return that; raise TimeoutError at the deadline.

    An exception from the predicate counts as "not yet" (a server still starting
    refuses connections); the last one is named in the TimeoutError.
    """
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        try:
            result = predicate()
        except Exception as exc:  # noqa: BLE001 - not there yet
            result, last_error = None, exc
        if result:
            return result
        time.sleep(interval)
    cause = f" (last error: {last_error!r})" if last_error else ""
    raise TimeoutError(f"gave up waiting for {what} after {timeout:g} s{cause}")


def write_models_file(directory: Path, extra: list[dict] | None = None) -> Path:
    """The default models file plus a model no worker serves (for 503 and validation tests)."""
    document = yaml.safe_load((REPO / "config" / "models.yaml").read_text())
    chat = next(m for m in document["models"] if m["id"] == CHAT_MODEL)
    document["models"].append({**chat, "id": GHOST_MODEL, "system_message": False})
    document["models"].extend(extra or [])
    path = directory / "models.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


class TlsFiles(NamedTuple):
    """PEM files for a TLS redis-server: the CA clients trust, the server's certificate and its key."""

    ca: Path
    cert: Path
    key: Path


class RedisServer:
    """config/redis.conf on a free loopback port; with `tls`, TLS only (no plain port); with `password`, AUTH."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        password: str | None = None,
        tls: TlsFiles | None = None,
        extra_args: list[str] | None = None,
        config: Path | None = None,
        host: str = "127.0.0.1",
        prefix: list[str] | None = None,
    ) -> None:
        self.dir = directory
        #: Another "host" (devstack.netns): its address, and the command that runs a program inside it.
        self.host, self.prefix = host, prefix or []
        #: Redis rewrites its file on CONFIG REWRITE (a Sentinel failover does): give such nodes a copy.
        self.config = config or REPO / "config" / "redis.conf"
        self.port = port or free_port()
        self.password, self.tls = password, tls
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL inferq's processes are given: `rediss://` (trusting `tls.ca`) with TLS, the password in it."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        scheme, query = ("rediss", "?" + urlencode({"ssl_ca_certs": str(self.tls.ca)})) if self.tls else ("redis", "")
        return f"{scheme}://{auth}{self.host}:{self.port}/0{query}"

    def _arguments(self) -> list[str]:
        if self.tls is None:
            listen = ["--port", str(self.port)]
        else:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.tls.cert)]
            listen += ["--tls-key-file", str(self.tls.key), "--tls-ca-cert-file", str(self.tls.ca)]
            listen += ["--tls-auth-clients", "no"]  # clients prove themselves with the password
        auth = ["--requirepass", self.password] if self.password else []
        config = [str(self.config), *listen, "--dir", str(self.dir), "--bind", self.host]
        return [*config, *auth, *self.extra_args]

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run `make redis`")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [*self.prefix, binary, *self._arguments()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.client().ping, 10, "redis-server", process=self.process)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(15)

    def client(self) -> redis.Redis:
        if self.tls is None and self.password is None:
            return redis.Redis(host=self.host, port=self.port)
        return redis.Redis.from_url(self.url)


class ServiceEnv:
    """The environment every inferq process of one test session shares."""

    def __init__(self, redis_url: str, models_file: Path, **extra: str) -> None:
        self.vars = {
            **os.environ,
            "INFERQ_REDIS_URL": redis_url,
            "INFERQ_MODELS_FILE": str(models_file),
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
            # A test's teardown SIGTERMs its workers: a stuck job is handed back in seconds, not 30.
            "INFERQ_DRAIN_SECONDS": os.environ.get("INFERQ_DRAIN_SECONDS", "5"),
            **extra,
        }

    def with_vars(self, **extra: str) -> ServiceEnv:
        """The same environment with a few variables changed (one process's own settings)."""
        env = ServiceEnv.__new__(ServiceEnv)
        env.vars = {**self.vars, **extra}
        return env


class WorkerProcess:
    def __init__(
        self,
        env: ServiceEnv,
        model: str = CHAT_MODEL,
        log_name: str | None = None,
        extra_args: list[str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.env, self.model, self.prefix = env, model, prefix or []
        self.log_path = ARTIFACTS / (log_name or f"worker-{model}.log")
        self.extra_args = extra_args or []
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True, timeout: float = 420) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "app.cli", "worker", "--model", self.model, *self.extra_args],
            cwd=REPO,
            env=self.env.vars,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_live(timeout)
        return self

    def wait_live(self, timeout: float = 420) -> None:
        from tasks.heartbeat import workers_key
        from tasks.redis_client import redis_client

        client = redis_client(self.env.vars["INFERQ_REDIS_URL"])  # `sentinel://` too
        name_prefix = f"{self.model}@"
        pid = str(self.process.pid)

        named = self.extra_args[self.extra_args.index("--name") + 1] if "--name" in self.extra_args else None

        def live() -> bool:
            members = [m.decode() for m in client.zrangebyscore(workers_key(self.model), time.time() - 5, "+inf")]
            if named is not None:
                return named in members
            return any(m.startswith(name_prefix) and m.endswith(f"-{pid}") for m in members)

        wait_until(live, timeout, f"worker for {self.model} (log: {self.log_path})", process=self.process)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Kill the whole process group: the worker and its engine core."""
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            self.process.wait(60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


class ApiServer:
    def __init__(
        self,
        env: ServiceEnv,
        workers: int = 2,
        log_name: str = "api.log",
        extra_args: list[str] | None = None,
        host: str = "127.0.0.1",
        prefix: list[str] | None = None,
    ) -> None:
        self.env, self.workers, self.host, self.prefix = env, workers, host, prefix or []
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.log_path = ARTIFACTS / log_name
        self.extra_args = extra_args or []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(
            [
                *self.prefix,
                sys.executable,
                "-m",
                "gunicorn",
                "--config",
                "gunicorn.conf.py",
                "--bind",
                f"{self.host}:{self.port}",
                "--workers",
                str(self.workers),
                *self.extra_args,
                "app.wsgi:app",
            ],
            cwd=REPO,
            env=self.env.vars,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: requests.get(self.url + "/health", timeout=2).ok, 60, "gunicorn", process=self.process)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))

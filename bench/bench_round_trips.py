"""Count the Redis commands one synchronous chat request costs, on the API side and on the worker side.

    .venv/bin/python bench/bench_round_trips.py [--repo DIR] [--requests 20]

Starts its own redis-server, one worker and gunicorn (one process) from the
checkout at --repo (default: this one), so the same program measures any
version of inferq. Redis's MONITOR sees every command with its client's
address; each address is mapped to the process that owns it. The worker's
background chores (heartbeat, leases, reconciler, the broker's polling) run
whether or not a request comes, so they are measured over an idle window
first and subtracted. Pipelines and scripts count as one round trip each;
the figures count commands sent, with a pipeline's commands counted one by
one (MULTI/EXEC excluded), so fewer is better either way.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import redis
import requests

HERE = Path(__file__).resolve().parent.parent
MODEL = "smollm2-135m-instruct"
LINE = re.compile(r'^\S+ \[\d+ [\d.]+:(\d+)\] "(\w+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    raise TimeoutError(what)


class Monitor(threading.Thread):
    """Collects (client port, command) from MONITOR until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.lines, self.recording = port, [], False
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")

    def run(self) -> None:
        buffer = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return
            buffer += chunk
            *complete, buffer = buffer.split(b"\r\n")
            for raw in complete:
                match = LINE.match(raw.decode(errors="replace").lstrip("+"))
                if match and self.recording:
                    self.lines.append((int(match.group(1)), match.group(2).upper()))

    def window(self, seconds_or_action) -> list[tuple[int, str]]:
        self.lines, self.recording = [], True
        started = time.monotonic()
        if callable(seconds_or_action):
            seconds_or_action()
        else:
            time.sleep(seconds_or_action)
        time.sleep(0.5)  # let the last commands arrive
        self.recording = False
        return list(self.lines), time.monotonic() - started


def owners(pids: dict[str, list[int]]) -> dict[int, str]:
    """Local port of every Redis connection -> which process (api / worker) owns it."""
    ports = {}
    for name, roots in pids.items():
        for root in roots:
            for proc in [psutil.Process(root), *psutil.Process(root).children(recursive=True)]:
                for conn in proc.net_connections(kind="tcp"):
                    ports[conn.laddr.port] = name
    return ports


def count(lines, ports, by_command: bool = False) -> Counter:
    """Commands per side, or per (side, command) with `by_command`."""
    tally = Counter()
    for port, command in lines:
        if command not in ("MULTI", "EXEC", "MONITOR"):
            side = ports.get(port, "other")
            tally[(side, command) if by_command else side] += 1
    return tally


def start(repo: Path, env: dict, args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=repo,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def start_stack(repo: Path, work: Path, redis_port: int, api_port: int) -> tuple[str, list[subprocess.Popen]]:
    """A key, a worker and a one-process gunicorn of `repo`'s code against the Redis on `redis_port`."""
    env = {
        **os.environ,
        "INFERQ_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(repo),
    }
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--name", "rt", "--rpm", "100000"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = next(line.strip() for line in out.splitlines() if line.strip().startswith("sk-"))
    worker_module = ["-m", "app.cli", "worker"] if (repo / "app" / "cli").is_dir() else ["-m", "tasks.worker"]
    worker = start(repo, env, [*worker_module, "--model", MODEL], work / "worker.log")
    gunicorn = ["-m", "gunicorn", "--config", "gunicorn.conf.py", "--workers", "1", "--bind", f"127.0.0.1:{api_port}"]
    api = start(repo, env, [*gunicorn, "app.wsgi:app"], work / "api.log")
    client = redis.Redis(port=redis_port)
    wait(lambda: client.zcard(f"inferq:workers:{MODEL}") > 0, 600, "worker")
    return key, [worker, api]


def measure(redis_port: int, api_port: int, key: str, procs: list[subprocess.Popen], requests_: int) -> None:
    url = f"http://127.0.0.1:{api_port}/v1/chat/completions"
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {key}"

    def one() -> None:
        http.post(url, json=body, timeout=120).raise_for_status()

    for _ in range(3):
        one()  # warm-up: tokenizer, scripts loaded, connections open
    monitor = Monitor(redis_port)
    monitor.start()
    idle, idle_seconds = monitor.window(3.0)
    busy, busy_seconds = monitor.window(lambda: [one() for _ in range(requests_)])
    worker, api = procs
    ports = owners({"api": [api.pid], "worker": [worker.pid]})
    idle_rate = {side: n / idle_seconds for side, n in count(idle, ports).items()}
    busy_total = count(busy, ports)
    print(f"requests: {requests_}  window: {busy_seconds:.1f} s")
    for side in ("api", "worker"):
        per_request = (busy_total[side] - idle_rate.get(side, 0) * busy_seconds) / requests_
        print(
            f"  {side:<6} commands per synchronous request: {per_request:5.1f}"
            f"  (background {idle_rate.get(side, 0):.1f}/s subtracted)"
        )
    # Which commands, background subtracted the same way: where the next saving is.
    idle_commands = count(idle, ports, by_command=True)
    by_command = count(busy, ports, by_command=True)
    for (side, command), n in sorted(by_command.items(), key=lambda item: -item[1]):
        per_request = (n - idle_commands[(side, command)] / idle_seconds * busy_seconds) / requests_
        if side in ("api", "worker") and abs(per_request) >= 0.2:
            print(f"    {side:<6} {command:<14} {per_request:5.2f} per request")
    for (side, command), n in sorted(idle_commands.items(), key=lambda item: -item[1]):
        print(f"    idle {side:<6} {command:<14} {n / idle_seconds:5.2f}/s")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="inferq-rt-"))
    redis_port, api_port = free_port(), free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(work), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    procs: list[subprocess.Popen] = []
    try:
        wait(redis.Redis(port=redis_port).ping, 10, "redis")
        key, procs = start_stack(args.repo, work, redis_port, api_port)
        print(f"checkout: {args.repo}")
        measure(redis_port, api_port, key, procs, args.requests)
        return 0
    finally:
        stop(procs)
        server.terminate()
        server.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

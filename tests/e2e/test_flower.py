"""Flower for operators: behind basic auth, lists each model's worker, never shows a prompt.

The browser test drives Debian's headless Chromium (installed by `make browser`;
at the e2e level it is required, so a missing browser fails rather than skips)
against a real Flower on the session's Redis while the session worker runs,
and keeps a screenshot of the workers page in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
import requests

from tests.harness import ARTIFACTS, CHAT_MODEL, REPO, free_port, wait_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # tests may run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1400,900",
    "--virtual-time-budget=8000",  # let the page's scripts fill the table
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def flower(service_env, worker):
    user, password = "operator", secrets.token_urlsafe(12)
    port = free_port()
    env = {**service_env.vars, "INFERQ_FLOWER_PORT": str(port), "INFERQ_FLOWER_BASIC_AUTH": f"{user}:{password}"}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "flower.log", "ab")  # noqa: SIM115 - kept open for the process's life
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "flower"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    auth = (user, password)
    try:
        wait_until(lambda: requests.get(url + "/workers", auth=auth, timeout=2).ok, 60, "flower", process=process)
        yield url, auth
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(20)
        log.close()


def flower_workers(url: str, auth: tuple[str, str]) -> dict:
    return requests.get(url + "/api/workers", params={"refresh": "1"}, auth=auth, timeout=30).json()


def test_flower_requires_credentials(flower):
    url, auth = flower
    assert requests.get(url + "/workers", timeout=5).status_code == 401
    assert requests.get(url + "/workers", auth=(auth[0], "wrong"), timeout=5).status_code == 401


def test_flower_shows_each_models_worker_and_queue(flower, worker):
    url, auth = flower
    workers = wait_until(
        lambda: {n: w for n, w in flower_workers(url, auth).items() if n.startswith(f"{CHAT_MODEL}@")},
        60,
        "the worker in flower",
    )
    (info,) = workers.values()
    assert [q["name"] for q in info["active_queues"]] == [f"model.{CHAT_MODEL}"]


def test_browser_lists_the_worker(flower, worker):
    binary = chromium()
    assert binary, "Debian's chromium is not installed: e2e needs it (`make browser`)"
    url, (user, password) = flower
    name = wait_until(
        lambda: next((n for n in flower_workers(url, (user, password)) if n.startswith(f"{CHAT_MODEL}@")), None),
        60,
        "the worker in flower",
    )
    page = f"http://{user}:{password}@{url.removeprefix('http://')}/workers"
    screenshot = ARTIFACTS / "flower-workers.png"
    screenshot.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="inferq-chromium-") as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        dom = subprocess.run(
            [binary, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120, check=True
        ).stdout
    with tempfile.TemporaryDirectory(prefix="inferq-chromium-") as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
        subprocess.run(
            [binary, *flags, f"--screenshot={screenshot}", page], capture_output=True, timeout=120, check=True
        )
    assert "<title>Workers" in dom, dom[:500]
    assert name in dom
    assert screenshot.stat().st_size > 10_000


def test_task_view_shows_job_and_model_not_prompt(flower, client):
    url, auth = flower
    secret = f"the secret word is {secrets.token_hex(6)}"
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": secret}], "max_tokens": 2}
    job_id = client.post("/queue/chat/completions", json=body).get_json()["id"]

    def seen() -> dict | None:
        task = requests.get(f"{url}/api/task/info/{job_id}", auth=auth, timeout=5)
        return task.json() if task.ok and task.json().get("state") == "SUCCESS" else None

    task = wait_until(seen, 120, "the task in flower", interval=1)
    assert task["name"] == "inferq.generate"
    assert job_id in task["args"]
    assert CHAT_MODEL in task["kwargs"]
    assert secret.split()[-1] not in json.dumps(task)
    page = requests.get(f"{url}/task/{job_id}", auth=auth, timeout=5).text
    assert job_id in page and secret.split()[-1] not in page
    listing = requests.get(f"{url}/api/tasks", auth=auth, timeout=5).text
    assert secret.split()[-1] not in listing

"""`inferq batch run` in a real terminal (a pty): the progress bar is drawn, and the results land on disk."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

from tests.harness import ARTIFACTS, CHAT_MODEL, REPO

LINES = 24


def read_all(fd: int, process: subprocess.Popen, timeout: float) -> bytes:
    """Everything the program writes to its terminal until it exits."""
    captured, deadline = bytearray(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the program closed its terminal
                break
            if not chunk:
                break
            captured += chunk
        elif process.poll() is not None:
            break
    return bytes(captured)


def read_until(fd: int, pattern: bytes, timeout: float) -> bytes:
    """What the program writes to its terminal, up to the first match of `pattern`."""
    captured, deadline = bytearray(), time.monotonic() + timeout
    while not re.search(pattern, captured) and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.5)[0]:
            captured += os.read(fd, 65536)
    assert re.search(pattern, captured), captured.decode(errors="replace")
    return bytes(captured)


def write_requests(path, lines: int, tokens: int, quick: int = 0, **body) -> None:
    """`lines` chat requests of `tokens` tokens, the first `quick` of them of one token."""
    prompts = [{"role": "user", "content": f"Hi {i}"} for i in range(lines)]
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"cli-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": CHAT_MODEL,
                        "messages": [prompts[i]],
                        "max_tokens": 1 if i < quick else tokens,
                        **body,
                    },
                }
            )
            + "\n"
            for i in range(lines)
        )
    )


def start_in_terminal(api_server, api_key, *arguments: str) -> tuple[subprocess.Popen, int]:
    """`inferq batch ...` on a fresh pty of 110 columns; the terminal's other end."""
    main, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 110, 0, 0))
    env = {**os.environ, "OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": api_server.url + "/v1", "TERM": "xterm"}
    env.pop("COLUMNS", None)
    command = [sys.executable, "-m", "app.cli", "batch", *arguments]
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env, cwd=REPO)
    os.close(terminal)
    return process, main


def test_batch_run_draws_its_progress_in_a_terminal(api_server, api_key, tmp_path):
    requests, output = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    write_requests(requests, LINES, 24)
    process, main = start_in_terminal(api_server, api_key, "run", str(requests), "-o", str(output), "--poll", "0.3")
    try:
        screen = read_all(main, process, 300)
    finally:
        os.close(main)
        process.wait(30)
    text = screen.decode(errors="replace")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "batch-cli.pty.txt").write_text(text)
    assert process.returncode == 0, text
    assert "\x1b[" in text  # drawn for a terminal: cursor moves and colours
    assert f"{LINES}/{LINES}" in text and "req/s" in text and "ETA" in text and "completed" in text
    answered = [json.loads(line)["custom_id"] for line in output.read_text().splitlines()]
    assert sorted(answered) == sorted(f"cli-{i}" for i in range(LINES))


def test_ctrl_c_offers_to_cancel_and_keeps_what_finished(api_server, api_key, http, tmp_path):
    requests, output = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    write_requests(requests, 40, 64, quick=4, ignore_eos=True)
    process, main = start_in_terminal(api_server, api_key, "run", str(requests), "-o", str(output), "--poll", "0.3")
    try:
        screen = read_until(main, rb"batch (batch_\w+)", 120)
        batch_id = re.search(rb"batch (batch_\w+)", screen).group(1).decode()
        read_until(main, rb"\b[1-9][0-9]*/40\b", 300)  # some lines finished
        process.send_signal(signal.SIGINT)
        read_until(main, rb"Cancel batch", 60)
        os.write(main, b"y\n")
        rest = read_all(main, process, 300)
    finally:
        os.close(main)
        process.wait(30)
    assert process.returncode == 1, rest.decode(errors="replace")
    batch = http.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "cancelled"
    kept = [json.loads(line)["custom_id"] for line in output.read_text().splitlines()]
    assert 0 < len(kept) < 40 and len(set(kept)) == len(kept)
    assert batch["request_counts"]["completed"] == len(kept)

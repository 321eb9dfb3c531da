"""`inferq keys`: create prints the key once, list never shows it, revoke works at once."""

import os
import re
import stat
import subprocess
import sys

from app.auth.keys import KeyStore
from tests.harness import REPO

KEY = re.compile(r"sk-[A-Za-z0-9_-]{43,}")


def inferq(service_env, *args):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", *args],
        cwd=REPO,
        env=service_env.vars,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, result.stdout, result.stderr


def test_create_list_revoke(service_env, redis_server, models_file):
    code, out, _ = inferq(
        service_env,
        "create",
        "--name",
        "ci",
        "--rpm",
        "30",
        "--tpm",
        "5000",
        "--models",
        "smollm2-135m-instruct",
        "--expires-in-days",
        "7",
    )
    assert code == 0
    [key] = KEY.findall(out)
    keys = KeyStore(redis_server.client())
    record = keys.authenticate(key)
    assert record["name"] == "ci" and record["rpm"] == 30 and record["tpm"] == 5000
    assert record["models"] == ["smollm2-135m-instruct"] and record["expires_at"]

    code, out, _ = inferq(service_env, "list")
    assert code == 0 and record["id"] in out and record["display"] in out and key not in out

    assert inferq(service_env, "revoke", record["id"])[0] == 0
    assert keys.authenticate(key) is None
    assert "revoked" in inferq(service_env, "list")[1]
    assert inferq(service_env, "revoke", "key_nonexistent")[0] == 1
    assert inferq(service_env, "create", "--name", "x", "--rpm", "5", "--models", "nope")[0] == 2


def test_ensure_local_keeps_one_key_in_a_private_file(service_env, redis_server, tmp_path):
    path = tmp_path / "var" / "local-api-key"
    code, first, _ = inferq(service_env, "ensure-local", "--file", str(path))
    assert code == 0
    [key] = set(KEY.findall(first))
    assert path.read_text().strip() == key
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KeyStore(redis_server.client()).authenticate(key)["name"] == "local"
    assert set(KEY.findall(inferq(service_env, "ensure-local", "--file", str(path))[1])) == {key}
    # A key that no longer works (Redis wiped, key revoked) is replaced.
    path.write_text("sk-stale\n")
    [fresh] = set(KEY.findall(inferq(service_env, "ensure-local", "--file", str(path))[1]))
    assert fresh != key and path.read_text().strip() == fresh

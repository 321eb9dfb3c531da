"""`inferq keys`: create prints the key once, list never shows it, revoke works at once.

`ensure-local` never prints a key (its output goes to process logs) and never
brings a revoked key back; it replaces only a key Redis has no record of.
"""

import os
import re
import stat
import subprocess
import sys

from app.auth.keys import KeyStore
from tests.harness import REPO, RedisServer, ServiceEnv

KEY = re.compile(r"sk-[A-Za-z0-9_-]{43,}")


def inferq(service_env, *args, **env):
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", *args],
        cwd=REPO,
        env={**service_env.vars, **env},
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


def local_keys(store: KeyStore) -> list[dict]:
    return [record for record in store.list() if record["name"] == "local"]


def test_ensure_local_keeps_one_key_in_a_private_file_and_never_prints_it(service_env, redis_server, tmp_path):
    store, path = KeyStore(redis_server.client()), tmp_path / "var" / "local-api-key"
    before = len(local_keys(store))
    code, first, err = inferq(service_env, "ensure-local", INFERQ_VAR_DIR=str(tmp_path / "var"))
    assert code == 0, err
    key = path.read_text().strip()
    assert KEY.fullmatch(key) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert store.authenticate(key)["name"] == "local" and store.authenticate(key)["models"] == []
    assert KEY.findall(first + err) == [] and f"Local API key: new, written to {path}\n" in first
    assert f'-H "Authorization: Bearer $(cat {path})"' in first

    code, again, err = inferq(service_env, "ensure-local", "--file", str(path))
    assert code == 0 and KEY.findall(again + err) == [] and f"Local API key: unchanged, in {path}\n" in again
    assert path.read_text().strip() == key and len(local_keys(store)) == before + 1


def test_ensure_local_does_not_bring_a_revoked_key_back(service_env, redis_server, tmp_path):
    store, path = KeyStore(redis_server.client()), tmp_path / "local-api-key"
    assert inferq(service_env, "ensure-local", "--file", str(path))[0] == 0
    key = path.read_text().strip()
    assert inferq(service_env, "revoke", store.authenticate(key)["id"])[0] == 0
    count = len(local_keys(store))

    code, out, err = inferq(service_env, "ensure-local", "--file", str(path))
    assert code == 0  # `make run` goes on serving the other keys
    assert f"The local API key in {path} was revoked; no new one was made." in err and "delete" in err
    assert out == "" and path.read_text().strip() == key and len(local_keys(store)) == count

    path.unlink()  # the operator's explicit "give me a new one"
    assert inferq(service_env, "ensure-local", "--file", str(path))[0] == 0
    assert store.authenticate(path.read_text().strip())["name"] == "local" and len(local_keys(store)) == count + 1


def test_ensure_local_replaces_a_key_that_redis_lost(models_file, tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        env, path = ServiceEnv(server.url, models_file), tmp_path / "local-api-key"
        assert inferq(env, "ensure-local", "--file", str(path))[0] == 0
        lost = path.read_text().strip()
        server.client().flushall()  # Redis wiped: every key is gone, the file still holds one

        code, out, err = inferq(env, "ensure-local", "--file", str(path))
        assert code == 0 and "(Redis had no record of the one the file held)" in out
        fresh = path.read_text().strip()
        assert fresh != lost and KEY.findall(out + err) == []
        assert KeyStore(server.client()).authenticate(fresh)["name"] == "local"
    finally:
        server.stop()

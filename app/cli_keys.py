"""`inferq keys ...`: the operator's API-key commands.

inferq keys create --name NAME --rpm 60 [--tpm N] [--models a,b] [--expires-in-days D]
inferq keys list
inferq keys revoke KEY_ID
inferq keys ensure-local [--file var/local-api-key]

`create` prints the key once; only its hash is stored, so it cannot be shown
again. `ensure-local` is the quick start's: it waits for Redis, keeps one key
named "local" in a 0600 file (making a new one if the file is missing or its
key no longer works, e.g. after Redis was wiped) and prints it every run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import redis

from app.auth.keys import KeyStore
from tasks.settings import Settings

LOCAL_RPM = 600


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inferq keys", description="Manage API keys.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("--name", required=True)
    create.add_argument("--rpm", type=int, required=True, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute (prompt + completion)")
    create.add_argument("--models", help="comma-separated model ids this key may use (default: all)")
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    commands.add_parser("list", help="list keys (never the keys themselves)")
    revoke = commands.add_parser("revoke", help="revoke a key by its id; effective at once")
    revoke.add_argument("key_id")
    local = commands.add_parser("ensure-local", help="create (once) and print the quick start's local key")
    local.add_argument("--file", type=Path, help="default: <INFERQ_VAR_DIR>/local-api-key")
    local.add_argument("--wait", type=float, default=30.0, help="seconds to wait for Redis")
    return parser


def _store(config: Settings, wait: float = 0.0) -> KeyStore:
    client = redis.Redis.from_url(config.redis_url)
    deadline = time.monotonic() + wait
    while True:
        try:
            client.ping()
            return KeyStore(client)
        except redis.ConnectionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def _describe(record: dict[str, Any]) -> str:
    expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record["expires_at"])) if record["expires_at"] else "never"
    state = (
        "revoked"
        if record["revoked"]
        else ("expired" if record["expires_at"] and record["expires_at"] <= time.time() else "active")
    )
    return (
        f"{record['id']:<21} {record['display']:<9} {state:<8} rpm={record['rpm']:<6} "
        f"tpm={record['tpm'] or '-':<8} models={','.join(record['models']) or 'all':<24} "
        f"expires={expires}  name={record['name']}"
    )


def create(args: argparse.Namespace, config: Settings) -> int:
    models = [m.strip() for m in (args.models or "").split(",") if m.strip()]
    unknown = sorted(set(models) - set(config.models))
    if unknown:
        print(f"unknown model(s): {', '.join(unknown)}; configured: {', '.join(config.models)}", file=sys.stderr)
        return 2
    expires_at = time.time() + args.expires_in_days * 86400 if args.expires_in_days else None
    try:
        key, record = _store(config).create(
            name=args.name, rpm=args.rpm, tpm=args.tpm, models=models, expires_at=expires_at
        )
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(_describe(record))
    print(f"\n{key}\n\nThis is the only time the key is shown; store it now.")
    return 0


def list_keys(config: Settings) -> int:
    for record in _store(config).list():
        print(_describe(record))
    return 0


def revoke(args: argparse.Namespace, config: Settings) -> int:
    if not _store(config).revoke(args.key_id):
        print(f"no key with id {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id}")
    return 0


def ensure_local(args: argparse.Namespace, config: Settings) -> int:
    store = _store(config, wait=args.wait)
    path: Path = args.file or config.local_key_file
    key = path.read_text().strip() if path.exists() else ""
    if not key or store.authenticate(key) is None:
        key, _record = store.create(name="local", rpm=LOCAL_RPM)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key + "\n")
    os.chmod(path, 0o600)
    print(f"Local API key (kept in {path}):\n\n  {key}\n")
    print(
        "  curl http://127.0.0.1:8000/v1/chat/completions \\\n"
        f'    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\\n'
        '    -d \'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hello"}]}\'\n',
        flush=True,
    )
    return 0


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    config = Settings.load()
    if args.command == "create":
        return create(args, config)
    if args.command == "list":
        return list_keys(config)
    if args.command == "revoke":
        return revoke(args, config)
    return ensure_local(args, config)

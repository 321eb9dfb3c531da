"""`inferq keys ...`: the operator's API-key commands.

`create` prints the key once; only its hash is stored, so it cannot be shown
again. `ensure-local` is the quick start's (`make run`): it keeps one key named
"local" in a 0600 file and never prints the key itself, since its output goes
to process logs; see its help for what it does when the key was revoked or
Redis lost it. Deployments create their keys with `create` instead.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click
import redis

from app.auth.keys import KeyStore, digest, record_key
from tasks.redis_client import redacted, redis_client
from tasks.settings import Settings

#: The quick start's key: generous enough that a person trying things never meets it.
LOCAL_RPM = 600


def open_store(config: Settings, wait: float = 0.0) -> KeyStore:
    """The key store, once Redis answers (waiting up to `wait` seconds: the quick start races Redis).

    A refused password is not waited on: it will not start working. The error
    names Redis by its URL with the password masked.
    """
    client = redis_client(config.redis_url)
    deadline = time.monotonic() + wait
    while True:
        try:
            client.ping()
            return KeyStore(client)
        except redis.AuthenticationError as exc:
            raise click.ClickException(f"Redis at {redacted(config.redis_url)} refused the password: {exc}") from exc
        except redis.ConnectionError as exc:
            if time.monotonic() >= deadline:
                raise click.ClickException(f"Redis at {redacted(config.redis_url)} does not answer: {exc}") from exc
            time.sleep(0.5)


def _state(record: dict[str, Any]) -> str:
    if record["revoked"]:
        return "revoked"
    return "expired" if record["expires_at"] and record["expires_at"] <= time.time() else "active"


def describe(record: dict[str, Any]) -> str:
    """One line per key, never the key itself: its id, display form, state and limits."""
    expires = time.strftime("%Y-%m-%d %H:%M", time.gmtime(record["expires_at"])) if record["expires_at"] else "never"
    return (
        f"{record['id']:<21} {record['display']:<9} {_state(record):<8} rpm={record['rpm']:<6} "
        f"tpm={record['tpm'] or '-':<8} models={','.join(record['models']) or 'all':<24} "
        f"expires={expires}  name={record['name']}"
    )


def _allowed_models(value: str | None, config: Settings) -> list[str]:
    """`a,b` as a list, refused if it names a model this deployment does not serve (a typo would lock the key out)."""
    models = [m.strip() for m in (value or "").split(",") if m.strip()]
    unknown = sorted(set(models) - set(config.models))
    if unknown:
        raise click.BadParameter(
            f"unknown model(s): {', '.join(unknown)}; configured: {', '.join(config.models)}", param_hint="--models"
        )
    return models


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command()
@click.option("--name", required=True)
@click.option("--rpm", type=click.IntRange(min=1), required=True, help="requests per minute")
@click.option("--tpm", type=click.IntRange(min=1), help="tokens per minute (prompt + completion)")
@click.option("--models", help="comma-separated model ids this key may use (default: all)")
@click.option("--expires-in-days", type=float, help="the key stops working after this many days")
def create(name: str, rpm: int, tpm: int | None, models: str | None, expires_in_days: float | None) -> None:
    """Create a key and print it (once)."""
    config = Settings.load()
    allowed = _allowed_models(models, config)
    expires_at = time.time() + expires_in_days * 86400 if expires_in_days else None
    key, record = open_store(config).create(name=name, rpm=rpm, tpm=tpm, models=allowed, expires_at=expires_at)
    click.echo(describe(record))
    click.echo(f"\n{key}\n\nThis is the only time the key is shown; store it now.")


@keys.command("list")
def list_keys() -> None:
    """List keys (never the keys themselves)."""
    for record in open_store(Settings.load()).list():
        click.echo(describe(record))


@keys.command()
@click.argument("key_id")
@click.pass_context
def revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key by its id; effective at once."""
    if not open_store(Settings.load()).revoke(key_id):
        click.echo(f"no key with id {key_id}", err=True)
        ctx.exit(1)
    click.echo(f"revoked {key_id}")


@keys.command("ensure-local")
@click.option(
    "--file", "path", type=click.Path(dir_okay=False, path_type=Path), help="default: <INFERQ_VAR_DIR>/local-api-key"
)
@click.option("--wait", type=float, default=30.0, show_default=True, help="seconds to wait for Redis")
def ensure_local(path: Path | None, wait: float) -> None:
    """Keep the quick start's local key in a private file; never print it.

    The key (all models, 600 requests a minute) lives in a 0600 file, by
    default <INFERQ_VAR_DIR>/local-api-key; read it from there. Each run:

    \b
    - no file: a new key is made and written to the file;
    - the file's key works: nothing changes;
    - Redis has no record of the file's key (its data was lost, or this is
      another Redis): a new key is made and replaces it in the file;
    - the file's key was revoked (or has expired): nothing is made, and a
      warning says so. A revoked key stays revoked, and it does not come back
      as a new one either; for a new local key, delete the file and run this
      again. The exit status is 0 all the same, so `make run` still starts.

    For a deployment, create keys with `inferq keys create` instead.
    """
    config = Settings.load()
    store = open_store(config, wait=wait)
    path = path or config.local_key_file
    key = path.read_text().strip() if path.exists() else ""
    state = _recorded_state(store, key)
    if state in ("revoked", "expired"):
        click.echo(
            f"The local API key in {path} was {state}; no new one was made. "
            f"For a new local key, delete {path} and run `inferq keys ensure-local` again.",
            err=True,
        )
        return
    if state == "active":
        os.chmod(path, 0o600)
        click.echo(f"Local API key: unchanged, in {path}")
    else:
        _write_private(path, store.create(name="local", rpm=LOCAL_RPM)[0])
        lost = " (Redis had no record of the one the file held)" if key else ""
        click.echo(f"Local API key: new, written to {path}{lost}")
    click.echo(
        "\n  curl http://127.0.0.1:8000/v1/chat/completions \\\n"
        f'    -H "Authorization: Bearer $(cat {path})" -H "Content-Type: application/json" \\\n'
        '    -d \'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "Hello"}]}\'\n'
    )


def _recorded_state(store: KeyStore, key: str) -> str | None:
    """What Redis holds for `key`: active, revoked or expired; None when it has no record of it at all."""
    key_id = store.redis.hget(record_key(digest(key)), "id") if key else None
    record = store.get(key_id.decode()) if key_id else None
    return _state(record) if record else None


def _write_private(path: Path, key: str) -> None:
    """Created 0600 from the first byte: the key is never readable by others, not even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")

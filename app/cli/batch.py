"""`inferq batch ...`: run a JSONL file of requests as an OpenAI batch, with a live progress bar.

    inferq batch run requests.jsonl -o results.jsonl   # upload, create, watch, download
    inferq batch status|cancel BATCH_ID
    inferq batch list

It speaks only the OpenAI Batch API through the `openai` SDK, so it works
against any server that implements it. The server and key come from
`--base-url`/`--api-key`, else `OPENAI_BASE_URL`/`OPENAI_API_KEY`, else the
quick start's local server and its key file (`var/local-api-key`). Ctrl-C
while a batch runs asks whether to cancel it; cancelled or not, what
finished is downloaded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from tasks.settings import Settings

TERMINAL = ("completed", "failed", "expired", "cancelled")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"


def _client(base_url: str | None, api_key: str | None) -> Any:
    from openai import OpenAI

    key = api_key
    if not key:
        path = Settings.load().local_key_file
        if not path.is_file():
            raise click.ClickException("No API key: pass --api-key or set OPENAI_API_KEY.")
        key = path.read_text().strip()
    return OpenAI(base_url=base_url or DEFAULT_BASE_URL, api_key=key)


def _endpoint(path: Path) -> str:
    """The endpoint the file's first request names (every line must name the same one)."""
    with path.open("rb") as source:
        for raw in source:
            if raw.strip():
                try:
                    return json.loads(raw)["url"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise click.ClickException(f"{path}: the first line is not a batch request ({exc}).") from exc
    raise click.ClickException(f"{path} holds no requests.")


def _describe(batch: Any) -> str:
    counts = batch.request_counts
    done = f"{counts.completed} completed, {counts.failed} failed of {counts.total}" if counts else ""
    return f"{batch.id}  {batch.status:<11} {done}  {batch.endpoint}"


connection = [
    click.option(
        "--base-url",
        envvar="OPENAI_BASE_URL",
        default=None,
        help="The API's base URL (default: $OPENAI_BASE_URL or local).",
    ),
    click.option(
        "--api-key",
        envvar="OPENAI_API_KEY",
        default=None,
        help="The API key (default: $OPENAI_API_KEY or var/local-api-key).",
    ),
]


def with_connection(command: Any) -> Any:
    for option in reversed(connection):
        command = option(command)
    return command


@click.group("batch")
def batch() -> None:
    """Run and manage OpenAI-style batches (any server with the Batch API)."""


@batch.command("run")
@click.argument("requests", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Results file.")
@click.option("--errors", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Failed lines' file.")
@click.option("--window", default="24h", show_default=True, help="The completion window.")
@click.option("--poll", type=float, default=1.0, show_default=True, help="Seconds between status polls.")
@with_connection
def run(
    requests: Path, output: Path, errors: Path | None, window: str, poll: float, base_url: str, api_key: str
) -> None:
    """Upload REQUESTS, run it as a batch with a progress bar, then download its results."""
    from app.cli.batch_progress import watch

    client = _client(base_url, api_key)
    endpoint = _endpoint(requests)
    with requests.open("rb") as source:
        uploaded = client.files.create(file=(requests.name, source), purpose="batch")
    created = client.batches.create(input_file_id=uploaded.id, endpoint=endpoint, completion_window=window)
    click.echo(f"batch {created.id}: {created.request_counts.total if created.request_counts else 0} requests")
    if created.status == "failed":
        _report_failure(created)
    done = watch(client, created, poll)
    _download(client, done, output, errors or output.with_name(output.stem + ".errors.jsonl"))
    if done.status != "completed":
        raise SystemExit(1)


def _report_failure(created: Any) -> None:
    for error in (created.errors.data if created.errors else [])[:20]:
        click.echo(f"  line {error.line}: {error.param or ''} {error.message}", err=True)
    raise click.ClickException(f"the batch failed validation ({len(created.errors.data)} bad lines shown first)")


def _download(client: Any, done: Any, output: Path, errors: Path) -> None:
    for file_id, path in ((done.output_file_id, output), (done.error_file_id, errors)):
        if file_id:
            client.files.content(file_id).write_to_file(path)
            click.echo(f"wrote {path}")
    click.echo(_describe(done))


@batch.command("status")
@click.argument("batch_id")
@with_connection
def status(batch_id: str, base_url: str, api_key: str) -> None:
    """Show one batch."""
    click.echo(_describe(_client(base_url, api_key).batches.retrieve(batch_id)))


@batch.command("cancel")
@click.argument("batch_id")
@with_connection
def cancel(batch_id: str, base_url: str, api_key: str) -> None:
    """Cancel a batch (what finished stays in its output)."""
    click.echo(_describe(_client(base_url, api_key).batches.cancel(batch_id)))


@batch.command("list")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@with_connection
def list_batches(limit: int, base_url: str, api_key: str) -> None:
    """The key's batches, newest first."""
    for item in _client(base_url, api_key).batches.list(limit=limit).data:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item.created_at))
        click.echo(f"{created}  {_describe(item)}")

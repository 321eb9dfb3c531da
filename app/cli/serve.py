"""The long-running processes of a deployment, and the one-off that prepares their models.

`worker` and `flower` import Celery and the queue layer only when they run
(a second of start-up), so `inferq keys ...` and `inferq --help` stay quick.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

import click

from tasks.settings import Settings
from workers.prepare import PREPARERS, prepare

LOG_LEVELS = ["debug", "info", "warning", "error", "critical"]


@click.command()
@click.option("--model", required=True, help="the model id (from the models file) this worker serves")
@click.option("--name", help="worker node name  [default: <model>@<host>-<pid>]")
@click.option(
    "--concurrency", type=click.IntRange(min=1), help="jobs run at once  [default: the model's max_concurrency]"
)
@click.option("--loglevel", type=click.Choice(LOG_LEVELS, case_sensitive=False), help="[default: INFERQ_LOG_LEVEL]")
def worker(model: str, name: str | None, concurrency: int | None, loglevel: str | None) -> None:
    """Run a worker for one model.

    One vLLM engine runs up to --concurrency of the model's jobs at once; the
    worker consumes only its queue, `model.<id>`. Start more workers, on any
    host with the same Redis, to serve the model faster.
    """
    from tasks import worker as worker_process

    config = Settings.load()
    if model not in config.models:
        raise click.BadParameter(
            f"unknown model {model!r}; configured: {', '.join(config.models)}", param_hint="--model"
        )
    level = (loglevel or config.log_level).upper()
    worker_process.run(config, config.models[model], name=name, concurrency=concurrency, loglevel=level)


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def api(gunicorn_args: tuple[str, ...]) -> None:
    """Serve the API with gunicorn.

    gunicorn.conf.py sets everything from the INFERQ_* settings; options given
    here (e.g. --bind, --workers) go to gunicorn and win over it.
    """
    argv = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *gunicorn_args, "app.wsgi:app"]
    os.execvp(argv[0], argv)


@click.command()
def flower() -> None:
    """Run Flower: loopback only, basic auth always.

    \f
    Flower can revoke tasks and shows every argument, so it must not be open:
    it binds to INFERQ_FLOWER_ADDRESS (loopback by default), and without
    configured credentials it makes some up and prints them once.
    """
    from tasks.celery_app import create_celery

    config = Settings.load()
    address, port, credentials = config.flower_address, config.flower_port, config.flower_basic_auth
    if not credentials:
        credentials = f"admin:{secrets.token_urlsafe(18)}"
        click.echo(f"Flower at http://{address}:{port} — user/password: {credentials}")
    options = [f"--address={address}", f"--port={port}", f"--basic-auth={credentials}", "--purge_offline_workers=60"]
    celery = create_celery(config)
    # Workers send task events only while watched (tasks.celery_app): turn them
    # on before Flower listens, so it sees every task from its first second.
    celery.control.enable_events(reply=True, timeout=2)
    celery.start(["flower", *options])


@click.command("prepare-models")
@click.argument("model_ids", metavar="[MODEL_ID]...", nargs=-1, type=click.Choice(list(PREPARERS)))
def prepare_models(model_ids: tuple[str, ...]) -> None:
    """Build the embedded models (offline, cached).

    All of them by default, into INFERQ_MODEL_CACHE; a prepared model is kept,
    so running it again costs nothing.
    """
    for model_id, path in prepare(Path(Settings.load().model_cache), list(model_ids) or None).items():
        click.echo(json.dumps({"model": model_id, "path": str(path)}))

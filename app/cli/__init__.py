"""The `inferq` command line: one Click group for everything an operator starts or manages.

    inferq worker --model smollm2-135m-instruct   # a worker pinned to one model
    inferq api [gunicorn options]                 # gunicorn serving the API
    inferq flower                                 # Flower on loopback, with basic auth
    inferq prepare-models [ids]                   # build the embedded models (offline, cached)
    inferq keys create|list|revoke|ensure-local   # API keys
    inferq batch run|status|cancel|list          # OpenAI-style batches, with a progress bar

Installed as the `inferq` console script; `python -m app.cli ...` is the same
thing without installing. Every command reads its configuration from
`tasks.settings.Settings.load()`, never from the environment itself.
"""

from __future__ import annotations

import click

from app.cli import batch, keys, serve


@click.group("inferq", context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run and manage an inferq deployment."""


for command in (serve.worker, serve.api, serve.flower, serve.prepare_models, keys.keys, batch.batch):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """The console script; Click exits with the command's status."""
    cli.main(args=argv, prog_name="inferq")

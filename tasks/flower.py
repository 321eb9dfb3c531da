"""Start Flower for operators: loopback only, basic auth always.

Flower can revoke tasks and shows every argument, so it must not be open:
it binds to 127.0.0.1 unless told otherwise, and if no credentials are
configured it makes some up and prints them once.
"""

from __future__ import annotations

import os
import secrets
import sys

from tasks.celery_app import create_celery


def main() -> int:
    address = os.environ.get("INFERQ_FLOWER_ADDRESS", "127.0.0.1")
    port = os.environ.get("INFERQ_FLOWER_PORT", "5555")
    credentials = os.environ.get("INFERQ_FLOWER_BASIC_AUTH")
    if not credentials:
        credentials = f"admin:{secrets.token_urlsafe(18)}"
        print(f"Flower at http://{address}:{port} — user/password: {credentials}", flush=True)
    celery = create_celery()
    celery.start(
        [
            "flower",
            f"--address={address}",
            f"--port={port}",
            f"--basic-auth={credentials}",
            "--purge_offline_workers=60",
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start Flower for operators: loopback only, basic auth always.

Flower can revoke tasks and shows every argument, so it must not be open:
it binds to 127.0.0.1 unless told otherwise, and if no credentials are
configured it makes some up and prints them once.
"""

from __future__ import annotations

import secrets
import sys

from tasks.celery_app import create_celery
from tasks.settings import Settings


def main() -> int:
    settings = Settings.load()
    address, port, credentials = settings.flower_address, settings.flower_port, settings.flower_basic_auth
    if not credentials:
        credentials = f"admin:{secrets.token_urlsafe(18)}"
        print(f"Flower at http://{address}:{port} — user/password: {credentials}", flush=True)
    celery = create_celery(settings)
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

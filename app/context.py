"""What a request handler reaches through the app: its settings and its services.

Built once by `create_app` and kept in `app.extensions`, so one process can
host several differently-configured apps (the tests do).
"""

from __future__ import annotations

from flask import current_app

from tasks.settings import Settings


def settings() -> Settings:
    return current_app.extensions["inferq.settings"]

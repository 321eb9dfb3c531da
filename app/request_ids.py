"""`X-Request-Id` on every response, as OpenAI sends it (the SDKs expose it as `_request_id`).

Support questions start from this id; a job's own id travels separately
(`X-Job-Id`, the job object), since one request may create no job or reuse one.
"""

from __future__ import annotations

import secrets

from flask import Flask, Response

HEADER = "X-Request-Id"


def _stamp(response: Response) -> Response:
    # Not headers.setdefault: werkzeug's raises and catches a KeyError on every miss, a cost on every request.
    if HEADER not in response.headers:
        response.headers[HEADER] = "req_" + secrets.token_hex(16)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_stamp)

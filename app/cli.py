"""The `inferq` command line: one entry point for operators.

inferq worker --model smollm2-135m-instruct   # a worker pinned to one model
inferq prepare-models                         # build the embedded models (offline, cached)
inferq flower                                 # Flower on loopback, with basic auth
inferq api                                    # gunicorn serving the API
inferq keys create|list|revoke|ensure-local   # API keys (inferq keys --help)
"""

from __future__ import annotations

import os
import sys


def _usage() -> int:
    print(__doc__.strip())
    return 2


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        return _usage()
    command, rest = args[0], args[1:]
    if command == "worker":
        from tasks.worker import main as worker_main

        return worker_main(rest)
    if command == "prepare-models":
        import json
        from pathlib import Path

        from tasks.settings import Settings
        from workers.prepare import prepare

        for model_id, path in prepare(Path(Settings.load().model_cache), rest or None).items():
            print(json.dumps({"model": model_id, "path": str(path)}))
        return 0
    if command == "flower":
        from tasks.flower import main as flower_main

        return flower_main()
    if command == "keys":
        from app.cli_keys import main as keys_main

        return keys_main(rest)
    if command == "api":
        os.execvp(
            sys.executable, [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *rest, "app.wsgi:app"]
        )
    print(f"unknown command {command!r}\n", file=sys.stderr)
    return _usage()


if __name__ == "__main__":
    sys.exit(main())

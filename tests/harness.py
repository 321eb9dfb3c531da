"""What the tests use from the process harness, under the name every test module imports.

The harness itself (real redis-server, worker and gunicorn processes) lives in
`devstack/processes.py`, shared with the benchmarks; this module only re-exports it, so
test modules keep one import line (`from tests.harness import CHAT_MODEL, …`)
and nothing is defined twice.
"""

from devstack.processes import *  # noqa: F403 - the whole public surface, see its __all__

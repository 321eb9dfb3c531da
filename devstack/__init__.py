"""A whole inferq stack of real processes on loopback, for the tests and the benchmarks.

Why a package of its own, beside `tests/` and `bench/`:

- Both need the same thing: a real `redis-server` on a free port, a real
  model worker, a real gunicorn, started and stopped (or killed) the same
  way. Kept in one of them, the other would import a sibling's internals
  (`bench` importing `tests.harness` was the problem) or copy them.
- It is not product code, so it stays out of `app/`, `tasks/` and `workers/`:
  they are what ships (setup.cfg's `packages.find` includes only those), and
  a launcher that shells out to `python -m tasks.worker` and gunicorn has no
  place inside the thing it launches.
- It imports the product (to read a worker's heartbeat key), never the other
  way round: the import direction stays `devstack → app/tasks`, with
  `tests → devstack` and `bench → devstack` beside it.

`devstack.processes` holds the launchers. The tests reach them through
`tests.harness` (the one import line every test module uses); the benchmarks
import `devstack.processes` directly (`bench/stacks.py` and the bench scripts).
"""

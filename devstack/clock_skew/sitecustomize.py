"""Move this process's wall clock by INFERQ_FAKE_CLOCK_OFFSET_SECONDS (chaos tests only).

Python imports `sitecustomize` at start-up from any directory on PYTHONPATH;
devstack.faults.clock_skew_vars puts this one there, and the child processes
(vLLM's engine core) inherit it. It shifts what Python code reads as the wall
clock (time.time, time.time_ns, datetime.now/utcnow/today) and leaves the
monotonic clock and every sleep and timed wait alone: the fault is a host whose
NTP is broken, nothing more.

libfaketime was used before and is not faithful here: with the monotonic clock
left unfaked, every time.sleep fails with EINVAL (Python 3.11 sleeps with an
absolute CLOCK_MONOTONIC deadline, which libfaketime 0.9.10 mistranslates),
and with it faked, threading's timed waits hang.
"""

import datetime as _datetime
import os
import time as _time

_OFFSET = float(os.environ.get("INFERQ_FAKE_CLOCK_OFFSET_SECONDS", "0") or 0)

if _OFFSET:
    _real_time, _real_time_ns = _time.time, _time.time_ns
    _OFFSET_NS = int(_OFFSET * 1e9)
    _time.time = lambda: _real_time() + _OFFSET
    _time.time_ns = lambda: _real_time_ns() + _OFFSET_NS

    class _SkewedDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # noqa: ANN001, ANN206 - mirrors datetime.now
            return _datetime.datetime.fromtimestamp(_time.time(), tz)

        @classmethod
        def utcnow(cls):  # noqa: ANN206
            return _datetime.datetime.fromtimestamp(_time.time(), _datetime.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls):  # noqa: ANN206
            return cls.now()

    _datetime.datetime = _SkewedDatetime

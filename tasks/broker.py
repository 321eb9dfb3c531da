"""Kombu's Redis transport, minus its restore of reserved messages when a connection closes.

When Redis dies under a worker (a crash, not a clean stop), Celery closes the
broker connection, and kombu's Redis channel tries to put the messages the
worker had reserved back on their queues through a client it can no longer
build: `AttributeError: 'NoneType' object has no attribute 'hostname'`, which
Celery treats as unrecoverable, and the worker exits (celery/kombu#582, #970).
The job store does not need that restore: every job a worker received holds a
lease, and a lease that stops being renewed is re-queued (and its message
re-sent) by the reconciler, while a redelivered duplicate is a no-op. So the
restore is switched off and the worker rides out the outage instead.
"""

from __future__ import annotations

from kombu.transport import redis as kombu_redis


class QoS(kombu_redis.QoS):
    restore_at_shutdown = False


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel

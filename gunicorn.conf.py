"""gunicorn settings for the API (read automatically from the working directory).

gevent workers: a synchronous completion blocks for the whole generation and
a stream stays open for minutes. With gevent each of those is a greenlet
parked on a Redis socket, so one process holds thousands of them; a threaded
worker would need a thread per waiting client.
"""

import multiprocessing
import os

bind = os.environ.get("INFERQ_BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = int(os.environ.get("INFERQ_API_WORKERS", max(2, multiprocessing.cpu_count())))
worker_connections = int(os.environ.get("INFERQ_API_CONNECTIONS", 2000))
timeout = 0  # gevent workers heartbeat on their own; long generations are normal
graceful_timeout = 30
keepalive = 30
accesslog = None  # off by default: nothing logs prompts or keys
errorlog = "-"
loglevel = os.environ.get("INFERQ_LOG_LEVEL", "info").lower()

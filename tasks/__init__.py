"""The queue layer: Celery app, job records in Redis, and the task bodies.

Import direction: `app` imports `tasks`, `tasks` imports `workers`; never back.
"""

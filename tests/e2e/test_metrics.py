"""`/metrics` under gunicorn: every worker process's counters are summed in every scrape."""

from __future__ import annotations

import requests

from app.metrics import scrape_values
from tests.integration.test_metrics import value


def test_gunicorn_workers_are_summed(api_server, api_key):
    """Under gunicorn (several processes) every scrape sees every process's requests."""
    url = api_server.url
    headers = {"Authorization": f"Bearer {api_key}"}
    first = scrape_values(requests.get(url + "/metrics", timeout=10).text)
    for _ in range(10):
        assert requests.get(url + "/v1/models", headers=headers, timeout=10).ok
    counts = set()
    for _ in range(6):  # scrapes land on either process; all must agree
        values = scrape_values(requests.get(url + "/metrics", timeout=10).text)
        counts.add(
            value(values, "inferq_http_requests_total", method="GET", route="/v1/models", status="200")
            - value(first, "inferq_http_requests_total", method="GET", route="/v1/models", status="200")
        )
    assert counts == {10}

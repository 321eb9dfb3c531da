"""`/metrics`: traffic moves the counters, Redis-backed gauges describe queues and engines."""

from __future__ import annotations

from app.metrics import scrape_values
from tests.harness import CHAT_MODEL

CHAT = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4}


def scrape(client) -> dict:
    response = client.get("/metrics", headers={"Authorization": ""})
    assert response.status_code == 200, response.get_data(as_text=True)
    return scrape_values(response.get_data(as_text=True))


def value(values: dict, name: str, **labels: str) -> float:
    key = f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels.items()))}}}"
    return values.get(key, 0.0)


def test_traffic_moves_the_counters(client, worker):
    before = scrape(client)
    for _ in range(2):
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert client.get("/v1/models/no-such-model").status_code == 404
    assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    after = scrape(client)

    route = {"method": "POST", "route": "/v1/chat/completions"}
    assert (
        value(after, "inferq_http_requests_total", **route, status="200")
        - value(before, "inferq_http_requests_total", **route, status="200")
        == 2
    )
    assert value(after, "inferq_http_requests_total", method="GET", route="/v1/models/<path:model>", status="404") > 0
    assert value(after, "inferq_http_requests_total", method="GET", route="/v1/models", status="401") > 0
    assert (
        value(after, "inferq_http_request_duration_seconds_count", **route)
        - value(before, "inferq_http_request_duration_seconds_count", **route)
        == 2
    )
    for name, labels in (
        ("inferq_jobs_submitted_total", {"model": CHAT_MODEL}),
        ("inferq_jobs_finished_total", {"model": CHAT_MODEL, "status": "completed"}),
    ):
        assert value(after, name, **labels) - value(before, name, **labels) == 2, name
    generated = {"model": CHAT_MODEL, "kind": "completion"}
    assert value(after, "inferq_tokens_total", **generated) - value(before, "inferq_tokens_total", **generated) >= 2
    assert value(after, "inferq_queue_depth", model=CHAT_MODEL) == 0
    assert value(after, "inferq_live_workers", model=CHAT_MODEL) >= 1
    engines = [k for k in after if k.startswith("inferq_worker_engine_requests{") and f"model={CHAT_MODEL}" in k]
    assert any(f"worker={CHAT_MODEL}@" in k and "state=running" in k for k in engines), engines
    assert any(k.startswith("inferq_worker_engine_healthy{") and after[k] == 1 for k in after)


def test_metrics_are_for_operators_only(make_app, redis_server):
    app = make_app(metrics_token="s3cret-metrics")
    client = app.test_client()
    remote = {"REMOTE_ADDR": "10.1.2.3"}
    assert client.get("/metrics", environ_base=remote, headers={"Authorization": ""}).status_code == 403
    # An API key is not enough: the numbers describe every tenant.
    assert client.get("/metrics", environ_base=remote).status_code == 403
    token = {"Authorization": "Bearer s3cret-metrics"}
    assert client.get("/metrics", environ_base=remote, headers=token).status_code == 200
    # Loopback behind a proxy is not loopback.
    proxied = {"Authorization": "", "X-Forwarded-For": "203.0.113.9"}
    assert client.get("/metrics", headers=proxied).status_code == 403
    assert client.get("/metrics", headers={"Authorization": ""}).status_code == 200

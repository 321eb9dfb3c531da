"""deploy/k8s: the manifests agree with each other, with the models file and with the settings they bound.

No cluster is needed: the YAML is read and its pieces are checked against
each other, so a model added to config/models.yaml without a worker
Deployment and a ScaledObject, a port changed on one side, or a drain bound
raised above the grace period fails here.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import yaml

from tasks.models import load_models
from tasks.settings import Settings
from tests.harness import REPO

K8S = REPO / "deploy" / "k8s"
#: What a pod needs besides the drain itself: vLLM's engine shutdown (it waits 5 s for its core),
#: the loops' stop and Celery's teardown. Measured 13 s on two cores (tests/integration/test_drain.py).
STOP_MARGIN_SECONDS = 20


def documents() -> list[dict]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in yaml.safe_load_all((K8S / name).read_text())]


def of_kind(kind: str) -> list[dict]:
    return [doc for doc in documents() if doc["kind"] == kind]


def env_of(container: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


@pytest.fixture(scope="module")
def models() -> dict:
    return load_models(str(REPO / "config" / "models.yaml"), "/models")


def workers() -> dict[str, dict]:
    """model id -> its worker Deployment (the one whose command names `--model <id>`)."""
    found = {}
    for deployment in of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        command = container["command"]
        if "worker" in command:
            found[command[command.index("--model") + 1]] = deployment
    return found


def test_the_kustomization_lists_every_manifest():
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


def test_one_worker_deployment_per_model_with_a_gpu_and_a_grace_period_above_its_drain(models):
    assert set(workers()) == set(models)
    for model, deployment in workers().items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["inferq.io/model"] == model
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        pod = deployment["spec"]["template"]["spec"]
        container = pod["containers"][0]
        assert container["command"][:2] == ["python", "-m"], "the worker itself gets SIGTERM, not a shell"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        drain = float(env_of(container).get("INFERQ_DRAIN_SECONDS") or Settings.load().drain_seconds)
        assert pod["terminationGracePeriodSeconds"] >= drain + STOP_MARGIN_SECONDS, model


def api_routes() -> set[str]:
    from app import create_app

    return {rule.rule for rule in create_app(Settings.load(redis_url="redis://127.0.0.1:1/0")).url_map.iter_rules()}


def test_the_api_service_ports_probes_and_grace_period_agree():
    (api,) = [
        d for d in of_kind("Deployment") if "gunicorn" in d["spec"]["template"]["spec"]["containers"][0]["command"]
    ]
    (service,) = of_kind("Service")
    pod = api["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = env_of(container)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert int(env["INFERQ_BIND"].rpartition(":")[2]) == ports["http"]
    assert service["spec"]["ports"][0]["targetPort"] in ("http", ports["http"])
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] in api_routes()
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > int(env["INFERQ_API_GRACEFUL_SECONDS"]) + pre_stop


def test_each_model_scales_on_its_own_backlog_through_the_api_service(models):
    (service,) = of_kind("Service")
    port = service["spec"]["ports"][0]["port"]
    scaled = {doc["spec"]["scaleTargetRef"]["name"]: doc for doc in of_kind("ScaledObject")}
    auth = {doc["metadata"]["name"] for doc in of_kind("TriggerAuthentication")}
    assert set(scaled) == {deployment["metadata"]["name"] for deployment in workers().values()}
    for model, deployment in workers().items():
        (trigger,) = scaled[deployment["metadata"]["name"]]["spec"]["triggers"]
        url = urlsplit(trigger["metadata"]["url"])
        assert url.hostname.split(".")[0] == service["metadata"]["name"] and url.port == port
        assert url.path == f"/metrics/backlog/{model}" and "/metrics/backlog/<model>" in api_routes()
        assert trigger["metadata"]["valueLocation"] == "total"
        assert int(trigger["metadata"]["targetValue"]) == models[model].max_concurrency
        assert trigger["authenticationRef"]["name"] in auth and trigger["metadata"]["authMode"] == "bearer"

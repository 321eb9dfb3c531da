"""docker/compose.yaml: valid for Docker Compose, and it keeps the operational promises.

`docker compose config` needs only the compose plugin, not a running engine;
where the plugin is missing that check is skipped, and the structure is
still checked from the YAML itself.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.harness import REPO

COMPOSE = REPO / "docker" / "compose.yaml"
ENV = {"FLOWER_BASIC_AUTH": "ops:secret", "PATH": "/usr/local/bin:/usr/bin:/bin"}


def compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


def test_compose_config_is_valid():
    if not compose_available():
        pytest.skip("`docker compose` (the Compose plugin) is not installed here")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_keeps_its_promises():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    models = [m["id"] for m in yaml.safe_load((REPO / "config" / "models.yaml").read_text())["models"]]

    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--maxmemory-policy noeviction" in redis
    assert "ports" not in services["redis"]  # internal network only

    served = [s["command"][-1] for name, s in services.items() if name.startswith("worker-")]
    assert sorted(served) == sorted(models)  # one worker per configured model
    assert all(
        services[name]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        for name in services
        if name.startswith("worker-")
    )

    flower = services["flower"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])
    assert "INFERQ_FLOWER_BASIC_AUTH" in flower["environment"]
    assert {"api", "flower", "redis"} <= set(services)

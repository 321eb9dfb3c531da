"""docker/compose.yaml: valid for Docker Compose, and it keeps the operational promises.

`docker compose config` needs only the compose plugin, not a running engine;
where the plugin is missing those checks are skipped, and the structure is
still checked from the YAML itself, with the file's `${VAR}`, `${VAR:-default}`
and `${VAR:?error}` references resolved the way Compose resolves them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.harness import REPO

COMPOSE = REPO / "docker" / "compose.yaml"
REDIS_CONF = REPO / "config" / "redis.conf"
PASSWORD = "0123abcd" * 8
SECRETS = {"REDIS_PASSWORD": PASSWORD, "FLOWER_BASIC_AUTH": "ops:secret"}
ENV = {**SECRETS, "PATH": "/usr/local/bin:/usr/bin:/bin"}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:[-?])(?P<arg>[^}]*))?\}")


class MissingVariable(Exception):
    """A `${VAR:?error}` whose variable is unset or empty: Compose refuses the file."""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """The document with every variable reference replaced, as `docker compose config` would."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match) -> str:
        given = env.get(match["name"], "")
        if given or match["op"] is None:
            return given
        if match["op"] == ":?":
            raise MissingVariable(f"{match['name']}: {match['arg']}")
        return match["arg"]

    return VARIABLE.sub(resolve, value)


def services(**env: str) -> dict[str, dict]:
    return interpolate(yaml.safe_load(COMPOSE.read_text()), {**SECRETS, **env})["services"]


def options(command: list[str]) -> dict[str, str]:
    """`redis-server --name value ...` as {name: value}."""
    return {flag.removeprefix("--"): value for flag, value in zip(command[1::2], command[2::2], strict=True)}


def compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return probe.returncode == 0


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    if not compose_available():
        pytest.skip("`docker compose` (the Compose plugin) is not installed here")
    command = ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_compose_config_is_valid():
    result = compose_config(ENV)
    assert result.returncode == 0, result.stderr


def test_compose_config_refuses_to_run_without_a_redis_password():
    result = compose_config({key: value for key, value in ENV.items() if key != "REDIS_PASSWORD"})
    assert result.returncode != 0 and "REDIS_PASSWORD" in result.stderr


def test_no_password_is_committed_or_defaulted():
    text = COMPOSE.read_text()
    references = re.findall(r"\$\{REDIS_PASSWORD[^}]*\}", text)
    assert len(references) >= 2 and all(ref.startswith("${REDIS_PASSWORD:?") for ref in references)
    with pytest.raises(MissingVariable, match="REDIS_PASSWORD"):
        interpolate(yaml.safe_load(text), {"FLOWER_BASIC_AUTH": "ops:secret"})


def test_every_service_reaches_redis_with_the_password():
    found = services()
    redis = found["redis"]
    assert options(redis["command"])["requirepass"] == PASSWORD
    assert redis["environment"]["REDISCLI_AUTH"] == PASSWORD  # the health check's redis-cli, off its argv
    assert "grep -qx PONG" in redis["healthcheck"]["test"][-1]  # a NOAUTH reply is not healthy
    clients = {name: s["environment"]["INFERQ_REDIS_URL"] for name, s in found.items() if name != "redis"}
    assert set(clients) == set(found) - {"redis"}
    assert set(clients.values()) == {f"redis://:{PASSWORD}@redis:6379/0"}


def test_only_the_api_and_flower_are_published():
    found = services()
    published = {name: s["ports"] for name, s in found.items() if s.get("ports")}
    assert published == {"api": ["0.0.0.0:8000:8000"], "flower": ["127.0.0.1:5555:5555"]}
    assert services(API_ADDRESS="127.0.0.1")["api"]["ports"] == ["127.0.0.1:8000:8000"]
    assert not [name for name, s in found.items() if s.get("network_mode") == "host" or "expose" in s]
    assert found["flower"]["environment"]["INFERQ_FLOWER_BASIC_AUTH"] == "ops:secret"
    with pytest.raises(MissingVariable, match="FLOWER_BASIC_AUTH"):
        interpolate(yaml.safe_load(COMPOSE.read_text()), {"REDIS_PASSWORD": PASSWORD})


def test_no_service_makes_an_api_key_and_the_api_keeps_its_state_in_a_volume():
    document = yaml.safe_load(COMPOSE.read_text())
    commands = [" ".join(s.get("command", [])) for s in document["services"].values()]
    assert not [command for command in commands if "keys" in command]
    api = services()["api"]
    assert api["command"] == ["gunicorn", "--config", "gunicorn.conf.py", "app.wsgi:app"]
    var_dir = api["environment"]["INFERQ_VAR_DIR"]
    assert f"api-var:{var_dir}" in api["volumes"] and "api-var" in document["volumes"]


def redis_conf() -> dict[str, str]:
    lines = [line.split(None, 1) for line in REDIS_CONF.read_text().splitlines() if line and line[0] != "#"]
    return {name: value.strip('"') for name, value in lines}


def test_redis_refuses_writes_at_maxmemory_and_fsyncs_every_write():
    conf = redis_conf()
    assert conf["maxmemory"] == "1gb" and conf["maxmemory-policy"] == "noeviction"
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "always"
    assert conf["no-appendfsync-on-rewrite"] == "no"

    compose = options(services()["redis"]["command"])
    shared = ("appendonly", "appendfsync", "no-appendfsync-on-rewrite", "maxmemory-policy", "save", "maxmemory")
    shared += ("hash-max-listpack-value",)
    assert {name: compose[name] for name in shared} == {name: conf[name] for name in shared}  # one policy
    assert options(services(REDIS_MAXMEMORY="6gb")["redis"]["command"])["maxmemory"] == "6gb"


def test_compose_keeps_its_promises():
    found = services()
    models = [m["id"] for m in yaml.safe_load((REPO / "config" / "models.yaml").read_text())["models"]]
    assert "redis-data:/data" in found["redis"]["volumes"]  # jobs survive a recreated container

    served = [s["command"][-1] for name, s in found.items() if name.startswith("worker-")]
    assert sorted(served) == sorted(models)  # one worker per configured model
    assert all(
        found[name]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        for name in found
        if name.startswith("worker-")
    )
    assert {"api", "flower", "redis"} <= set(found)

"""`rediss://` end to end, against a real redis-server that speaks only TLS and requires a password.

A throwaway CA signs the server's certificate (the `openssl` command, in a
temporary folder). The server listens on its TLS port only, so everything
below that reaches it went over TLS. The one INFERQ_REDIS_URL carries the
password and the CA; the job store's client, Celery's producer and consumer,
Flower and the `inferq` CLI each read it, check the certificate, and never
print the password.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import requests
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry

from tasks.celery_app import create_celery
from tasks.redis_client import redacted, redis_client, tls_options, without_tls_parameters
from tasks.settings import Settings
from tests.harness import ARTIFACTS, REPO, RedisServer, TlsFiles, free_port, wait_until

PROBE_TASK = "inferq.tls-probe"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> TlsFiles:
    """A CA and a server certificate for 127.0.0.1/localhost, with the extensions strict verifiers require."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=inferq test CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)  # fmt: skip
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=directory)
    (directory / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "server.ext", cwd=directory)  # fmt: skip
    return TlsFiles(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")


def tls_unavailable() -> str | None:
    """Why TLS cannot be tried here, or None. A redis-server built without TLS rejects `tls-port` as a directive."""
    if shutil.which("openssl") is None:
        return "the `openssl` command is not installed (it makes the throwaway CA)"
    binary = shutil.which("redis-server")
    if binary is None:
        return "redis-server is not installed; run `make redis`"
    probe = subprocess.run([binary, "--port", "0", "--tls-port", "0", "--save", ""], capture_output=True, timeout=30)
    if b"Bad directive" in probe.stdout + probe.stderr:
        return "this redis-server was built without TLS (it does not know `tls-port`)"
    return None


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory):
    reason = tls_unavailable()
    if reason:
        pytest.skip(reason)
    directory = tmp_path_factory.mktemp("redis-tls")
    server = RedisServer(directory / "data", password=secrets.token_hex(16), tls=make_pki(directory)).start()
    yield server
    server.stop()


def settings_for(url: str) -> Settings:
    return Settings.load(redis_url=url)


def url_without_ca(server: RedisServer) -> str:
    return without_tls_parameters(server.url)


def test_the_url_names_tls_the_password_and_the_ca(tls_redis):
    assert tls_redis.url.startswith(f"rediss://:{tls_redis.password}@127.0.0.1:")
    assert tls_options(tls_redis.url)["ssl_ca_certs"] == str(tls_redis.tls.ca)
    plain = redis.Redis(port=tls_redis.port, socket_connect_timeout=5, socket_timeout=5, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.ConnectionError):  # no plain port: TLS or nothing
        plain.ping()


def test_the_job_store_client_pings_over_tls(tls_redis):
    client = redis_client(tls_redis.url)
    assert client.ping()
    client.set("inferq:tls-probe", "ok", ex=60)
    assert tls_redis.client().get("inferq:tls-probe") == b"ok"


def test_celery_publishes_and_a_consumer_reads_over_tls(tls_redis):
    celery = create_celery(settings_for(tls_redis.url))
    assert celery.conf.broker_use_ssl == {"ssl_cert_reqs": 2, "ssl_ca_certs": str(tls_redis.tls.ca)}
    celery.send_task(PROBE_TASK, args=["job_tls"], queue="tls-probe", task_id="job_tls")
    with celery.connection_for_read() as connection:
        queue = connection.SimpleQueue("tls-probe")
        message = queue.get(timeout=10)
        assert message.headers["task"] == PROBE_TASK and message.headers["id"] == "job_tls"
        assert message.decode()[0] == ["job_tls"]
        message.ack()
        queue.close()


def test_clients_without_the_ca_are_refused(tls_redis):
    """Certificate checks are on by default: `rediss://` alone trusts only the system's CAs, not this one."""
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        redis_client(url_without_ca(tls_redis)).ping()
    celery = create_celery(settings_for(url_without_ca(tls_redis)))
    assert celery.conf.broker_use_ssl == {"ssl_cert_reqs": 2}  # kombu alone would have said CERT_NONE
    with celery.connection_for_write() as connection, pytest.raises(OperationalError, match="CERTIFICATE_VERIFY"):
        connection.ensure_connection(max_retries=1)


def test_checks_are_off_only_when_the_url_says_so(tls_redis):
    insecure = url_without_ca(tls_redis) + "?ssl_cert_reqs=none"
    assert redis_client(insecure).ping()
    with create_celery(settings_for(insecure)).connection_for_write() as connection:
        connection.ensure_connection(max_retries=1)


def inferq_cli(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "INFERQ_REDIS_URL": url, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


def test_the_cli_works_over_tls_and_masks_the_password(tls_redis):
    created = inferq_cli(tls_redis.url, "keys", "create", "--name", "tls", "--rpm", "5")
    assert created.returncode == 0, created.stderr
    assert "tls" in inferq_cli(tls_redis.url, "keys", "list").stdout

    wrong = tls_redis.url.replace(tls_redis.password, "not-the-password")
    refused = inferq_cli(wrong, "keys", "list")
    assert refused.returncode == 1
    assert f"Redis at rediss://:**@127.0.0.1:{tls_redis.port}/0" in refused.stderr
    assert "refused the password" in refused.stderr and "not-the-password" not in refused.stdout + refused.stderr


@pytest.fixture()
def flower_over_tls(tls_redis):
    port, auth = free_port(), ("ops", secrets.token_hex(8))
    log_path = ARTIFACTS / "flower-tls.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "INFERQ_REDIS_URL": tls_redis.url, "INFERQ_FLOWER_PORT": str(port),
           "INFERQ_FLOWER_BASIC_AUTH": ":".join(auth), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "app.cli", "flower"], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", auth, process, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_flower_reads_the_queues_over_tls_and_logs_no_password(tls_redis, flower_over_tls):
    url, auth, process, log_path = flower_over_tls
    tls_redis.client().flushdb()
    create_celery(settings_for(tls_redis.url)).send_task(PROBE_TASK, args=["job_flower"])  # the default queue

    def lengths() -> dict[str, int]:
        reply = requests.get(url + "/api/queues/length", auth=auth, timeout=5)
        return {q["name"]: q["messages"] for q in reply.json()["active_queues"]} if reply.ok else {}

    assert wait_until(lengths, 60, "flower's queue lengths", process=process) == {"celery": 1}
    log = log_path.read_text()
    assert f"Broker: rediss://:**@127.0.0.1:{tls_redis.port}/0" in log
    assert tls_redis.password not in log and auth[1] not in log


def test_the_celery_config_that_flower_and_inspect_show_holds_no_secret():
    """`celery inspect conf` (Flower's worker page) prints the app's config: it must hold no credential."""
    from celery.utils.serialization import jsonify
    from kombu.utils.encoding import safe_repr

    secret_settings = Settings.load(
        redis_url="rediss://:redis-secret@redis.example:6380/0?ssl_ca_certs=/ca.pem",
        flower_basic_auth="ops:flower-secret",
        metrics_token="metrics-secret",
    )
    table = jsonify(create_celery(secret_settings).conf.table(with_defaults=True), unknown_type_filter=safe_repr)
    shown = repr(table)
    assert not [secret for secret in ("redis-secret", "flower-secret", "metrics-secret") if secret in shown]
    assert table["broker_url"] == "rediss://:********@redis.example:6380/0"


@pytest.mark.parametrize(
    "url, expected",
    [
        ("redis://127.0.0.1:6379/0", None),
        ("rediss://h:6380/0", {"ssl_cert_reqs": 2}),
        ("rediss://h/0?ssl_cert_reqs=optional&ssl_ca_certs=/c.pem", {"ssl_cert_reqs": 1, "ssl_ca_certs": "/c.pem"}),
        ("rediss://h/0?ssl_cert_reqs=NONE&ssl_check_hostname=false", {"ssl_cert_reqs": 0, "ssl_check_hostname": False}),
        ("rediss://h/0?ssl_certfile=/c&ssl_keyfile=/k&socket_timeout=5",
         {"ssl_cert_reqs": 2, "ssl_certfile": "/c", "ssl_keyfile": "/k"}),
    ],
)  # fmt: skip
def test_tls_options_verify_unless_the_url_says_otherwise(url, expected):
    assert tls_options(url) == expected


def test_tls_options_refuse_an_unknown_requirement():
    with pytest.raises(ValueError, match="ssl_cert_reqs='maybe' in the Redis URL: use one of required, optional, none"):
        tls_options("rediss://h/0?ssl_cert_reqs=maybe")


def test_the_broker_url_drops_only_the_tls_parameters_and_logs_mask_the_password():
    url = "rediss://:p%40ss@h:6380/0?ssl_ca_certs=/c.pem&ssl_cert_reqs=required&health_check_interval=5"
    assert without_tls_parameters(url) == "rediss://:p%40ss@h:6380/0?health_check_interval=5"
    assert redacted(url) == "rediss://:**@h:6380/0?ssl_ca_certs=/c.pem&ssl_cert_reqs=required&health_check_interval=5"
    assert redacted("redis://user:pw@h/0") == "redis://user:**@h/0"
    assert redacted("redis://h/0") == "redis://h/0"

"""Bearer keys: every failure is the same 401, allow-lists hide models, jobs belong to their key."""

import time

import pytest

from app.auth.keys import KeyStore
from tests.harness import CHAT_MODEL, GHOST_MODEL, wait_until

MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture()
def keys(redis_server):
    return KeyStore(redis_server.client())


@pytest.fixture()
def app(make_app):
    return make_app()


def client_for(app, key=None, header=None):
    """A test client sending exactly this Authorization header (none when both are None)."""
    client = app.test_client()
    client.environ_base.pop("HTTP_AUTHORIZATION", None)
    if key is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    elif header is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = header
    return client


def refused(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == "invalid_api_key"
    assert response.get_json()["error"]["type"] == "invalid_request_error"
    return response.get_data()


def test_every_failure_gets_the_same_401(app, keys):
    good, _ = keys.create(name="good", rpm=1000)
    revoked, record = keys.create(name="revoked", rpm=1000)
    keys.revoke(record["id"])
    expired, _ = keys.create(name="expired", rpm=1000, expires_at=time.time() - 1)
    cases = [
        client_for(app),  # no header
        client_for(app, header=good),  # no scheme
        client_for(app, header=f"Basic {good}"),
        client_for(app, header="Bearer"),
        client_for(app, header="Bearer "),
        client_for(app, key="not-a-key"),
        client_for(app, key="sk-" + "A" * 43),  # well formed, unknown
        client_for(app, key=good[:-1]),  # one character short
        client_for(app, key=good + "x" * 300),  # oversized
        client_for(app, key=revoked),
        client_for(app, key=expired),
    ]
    bodies = {refused(client.get("/v1/models")) for client in cases}
    assert len(bodies) == 1
    assert good.encode() not in next(iter(bodies))
    assert client_for(app, key=good).get("/v1/models").status_code == 200


def test_every_route_is_protected_but_health(app):
    anonymous = client_for(app)
    assert anonymous.get("/health").status_code == 200
    refused(anonymous.post("/v1/chat/completions", json={"model": CHAT_MODEL, "messages": MESSAGES}))
    refused(anonymous.post("/v1/completions", json={"model": CHAT_MODEL, "prompt": "x"}))
    refused(anonymous.get("/v1/usage"))
    refused(anonymous.get("/queue/jobs"))
    refused(anonymous.get("/v1/no-such-route"))  # no route discovery without a key


def test_revocation_takes_effect_on_the_next_request(app, keys):
    key, record = keys.create(name="soon-revoked", rpm=1000)
    client = client_for(app, key=key)
    assert client.get("/v1/models").status_code == 200
    assert keys.revoke(record["id"])
    refused(client.get("/v1/models"))
    assert keys.get(record["id"])["revoked"]


def test_a_key_stops_at_its_expiry(app, keys):
    expires_at = time.time() + 1.0
    key, _ = keys.create(name="short-lived", rpm=1000, expires_at=expires_at)
    client = client_for(app, key=key)
    assert client.get("/v1/models").status_code == 200
    answers: list[tuple[float, float, int]] = []  # (sent, answered, status)

    def stopped() -> bool:
        sent = time.time()
        status = client.get("/v1/models").status_code
        answers.append((sent, time.time(), status))
        return status == 401

    wait_until(stopped, 10, "the key to pass its expiry", interval=0.05)
    # Neither early nor late: refused only once expired, accepted only before.
    assert all(answered >= expires_at for _, answered, status in answers if status == 401)
    assert all(sent < expires_at for sent, _, status in answers if status == 200)
    refused(client.get("/v1/models"))


def test_allow_list_hides_other_models_as_404(app, keys):
    key, _ = keys.create(name="chat-only", rpm=1000, models=[CHAT_MODEL])
    client = client_for(app, key=key)
    assert [m["id"] for m in client.get("/v1/models").get_json()["data"]] == [CHAT_MODEL]
    assert client.get(f"/v1/models/{CHAT_MODEL}").status_code == 200
    hidden = client.get(f"/v1/models/{GHOST_MODEL}")
    assert hidden.status_code == 404 and hidden.get_json()["error"]["code"] == "model_not_found"

    body = {"messages": MESSAGES, "max_tokens": 4000}
    not_allowed = client.post("/v1/chat/completions", json={**body, "model": GHOST_MODEL})
    unknown = client.post("/v1/chat/completions", json={**body, "model": "no-such-model"})
    assert not_allowed.status_code == unknown.status_code == 404
    assert not_allowed.get_json()["error"]["message"].replace(GHOST_MODEL, "M") == unknown.get_json()["error"][
        "message"
    ].replace("no-such-model", "M")
    # The allowed model gets past the allow-list (and is refused later, for its context length).
    allowed = client.post("/v1/chat/completions", json={**body, "model": CHAT_MODEL})
    assert allowed.get_json()["error"]["code"] == "context_length_exceeded"
    queued = client.post("/queue/chat/completions", json={"model": GHOST_MODEL, "messages": MESSAGES})
    assert queued.status_code == 404


def test_jobs_belong_to_the_key_that_created_them(app, keys):
    """Another key sees exactly what it sees for a job that never existed: 404."""
    owner_key, _ = keys.create(name="owner", rpm=1000)
    other_key, _ = keys.create(name="other", rpm=1000)
    owner, other = client_for(app, key=owner_key), client_for(app, key=other_key)
    # No worker serves the ghost model, so the job stays queued for the whole test.
    submitted = owner.post("/queue/chat/completions", json={"model": GHOST_MODEL, "messages": MESSAGES})
    assert submitted.status_code == 202, submitted.get_data(as_text=True)
    job_id = submitted.get_json()["id"]
    assert owner.get(f"/queue/jobs/{job_id}").status_code == 200

    never = "job_" + "0" * 32
    for method, path in [
        ("get", "/queue/jobs/{}"),
        ("get", "/queue/chat/completions/{}"),
        ("get", "/queue/jobs/{}/stream"),
        ("delete", "/queue/jobs/{}"),
        ("post", "/queue/jobs/{}/cancel"),
    ]:
        theirs = getattr(other, method)(path.format(job_id))
        missing = getattr(other, method)(path.format(never))
        assert theirs.status_code == missing.status_code == 404, (path, theirs.get_data(as_text=True))
        assert theirs.get_json()["error"]["message"].replace(job_id, "J") == missing.get_json()["error"][
            "message"
        ].replace(never, "J")
        assert theirs.get_json()["error"]["code"] == missing.get_json()["error"]["code"]
    assert job_id not in [job["id"] for job in other.get("/queue/jobs").get_json()["data"]]
    assert job_id in [job["id"] for job in owner.get("/queue/jobs").get_json()["data"]]
    # The other key's cancel did nothing; the owner's does.
    assert owner.get(f"/queue/jobs/{job_id}").get_json()["status"] == "queued"
    assert owner.delete(f"/queue/jobs/{job_id}").get_json()["status"] == "cancelled"

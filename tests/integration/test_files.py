"""The Files API on the real Redis and a real storage directory: upload, read, list, delete, limits, owners."""

from __future__ import annotations

import io

import pytest

from app.auth.keys import KeyStore
from tests.harness import wait_until  # noqa: F401 - keeps the harness import line every test module has


def upload(client, data: bytes, purpose: str = "batch", name: str = "requests.jsonl"):
    return client.post(
        "/v1/files", data={"purpose": purpose, "file": (io.BytesIO(data), name)}, content_type="multipart/form-data"
    )


@pytest.fixture()
def other_key(redis_server):
    key, _ = KeyStore(redis_server.client()).create(name="files-other", rpm=1_000_000)
    return {"Authorization": f"Bearer {key}"}


def test_upload_read_list_download_delete(bare_client):
    body = b'{"custom_id": "a"}\n' * 300_000  # 5.7 MB of short lines: more than the app-wide 4 MiB body limit
    created = upload(bare_client, body, name="dir/reqs.jsonl")
    assert created.status_code == 200, created.get_data(as_text=True)
    file = created.get_json()
    assert file["object"] == "file" and file["bytes"] == len(body) and file["purpose"] == "batch"
    assert file["filename"] == "reqs.jsonl" and file["id"].startswith("file-")
    assert bare_client.get(f"/v1/files/{file['id']}").get_json() == file
    listed = bare_client.get("/v1/files", query_string={"purpose": "batch"}).get_json()
    assert file["id"] in [f["id"] for f in listed["data"]]
    content = bare_client.get(f"/v1/files/{file['id']}/content")
    assert content.status_code == 200 and content.get_data() == body
    deleted = bare_client.delete(f"/v1/files/{file['id']}")
    assert deleted.get_json() == {"id": file["id"], "object": "file", "deleted": True}
    missing = bare_client.get(f"/v1/files/{file['id']}")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "file_not_found"


def test_another_key_sees_nothing(bare_client, other_key):
    file = upload(bare_client, b"{}\n").get_json()
    for method, path in (("get", ""), ("get", "/content"), ("delete", "")):
        reply = getattr(bare_client, method)(f"/v1/files/{file['id']}{path}", headers=other_key)
        assert reply.status_code == 404, (method, path)
    listed = bare_client.get("/v1/files", headers=other_key).get_json()
    assert file["id"] not in [f["id"] for f in listed["data"]]
    assert bare_client.get(f"/v1/files/{file['id']}/content").get_data() == b"{}\n"


def test_too_large_is_413_and_keeps_nothing(make_app, redis_server):
    client = make_app(max_file_bytes=10_000).test_client()
    before = client.get("/v1/files").get_json()["data"]
    reply = upload(client, b"x" * 20_000)
    assert reply.status_code == 413, reply.get_data(as_text=True)
    assert reply.get_json()["error"]["code"] == "file_too_large"
    assert client.get("/v1/files").get_json()["data"] == before
    assert upload(client, b"x" * 9_000).status_code == 200


def test_bad_uploads_are_400(bare_client):
    assert upload(bare_client, b"{}", purpose="nonsense").status_code == 400
    no_file = bare_client.post("/v1/files", data={"purpose": "batch"}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and no_file.get_json()["error"]["param"] == "file"
    as_json = bare_client.post("/v1/files", json={"purpose": "batch"})
    assert as_json.status_code == 400

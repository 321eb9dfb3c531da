"""The Batch API's pure parts: windows, line splitting, the batch object, output lines, storage."""

from __future__ import annotations

import io
import json

import pytest
from marshmallow import ValidationError

from app.batch_input import lines
from app.schemas.batches import window_seconds
from tasks.batches.lines import Harvest
from tasks.batches.record import Batch, line_job_id, output_file_id
from tasks.jobs import Job
from tasks.storage import LocalStorage


def test_completion_windows():
    assert window_seconds("24h") == 86400 and window_seconds("30m") == 1800 and window_seconds("90s") == 90
    for bad in ("25h", "1d", "5s", "0h", "h", "24 h", ""):
        with pytest.raises(ValidationError):
            window_seconds(bad)


def test_lines_skip_blanks_and_cut_long_ones():
    source = io.BytesIO(b'{"a": 1}\n\n   \n' + b"x" * 50 + b"\n" + b'{"b": 2}')
    assert list(lines(source, 20)) == [(1, b'{"a": 1}\n'), (4, None), (5, b'{"b": 2}')]


def test_line_ids_are_stable_and_distinct():
    assert line_job_id("batch_a", 1) == line_job_id("batch_a", 1)
    assert len({line_job_id("batch_a", i) for i in range(1000)} | {line_job_id("batch_b", 0)}) == 1001
    assert output_file_id("batch_a", "output") != output_file_id("batch_a", "error")


def job(status: str, **fields) -> Job:
    return Job("job_" + "0" * 32, "key_x", "m", status, None, **fields)


def test_harvest_sorts_lines_into_the_two_files_and_sums_usage():
    harvest = Harvest([], [])
    usage = {"prompt_tokens": 3, "completion_tokens": 4}
    harvest.add("ok", "job_1", job("completed", result={"object": "chat.completion"}, usage=usage), "cancelled")
    harvest.add("bad", "job_2", job("failed", error={"error": {"code": "x"}}, error_status=400, usage=usage), "")
    harvest.add("stopped", "job_3", job("cancelled"), "expired")
    harvest.add("gone", "job_4", None, "cancelled")
    out = [json.loads(line) for line in harvest.output]
    err = {e["custom_id"]: e for e in map(json.loads, harvest.errors)}
    assert [o["custom_id"] for o in out] == ["ok"] and out[0]["response"]["status_code"] == 200
    assert out[0]["id"] == "batch_req_1"
    assert err["bad"]["response"]["status_code"] == 400 and err["bad"]["error"] is None
    assert err["stopped"]["error"]["code"] == "batch_expired" and err["stopped"]["response"] is None
    assert err["gone"]["error"]["code"] == "job_lost"
    assert (harvest.prompt_tokens, harvest.completion_tokens) == (6, 8)


def test_batch_object_has_every_openai_field():
    raw = {
        "id": "batch_1", "owner": "key_x", "endpoint": "/v1/embeddings", "input_file_id": "file-1",
        "completion_window": "24h", "status": "completed", "created_at": "100.5", "expires_at": "86500.5",
        "completed_at": "200", "total": "3", "completed": "2", "failed": "1", "prompt_tokens": "7",
        "metadata": '{"k": "v"}', "output_file_id": "file-2", "error_file_id": "",
    }  # fmt: skip
    obj = Batch.from_hash({k.encode(): v.encode() for k, v in raw.items()}).to_json()
    assert obj["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    assert obj["usage"]["input_tokens"] == 7 and obj["usage"]["total_tokens"] == 7
    assert obj["completed_at"] == 200 and obj["cancelled_at"] is None and obj["error_file_id"] is None
    assert obj["metadata"] == {"k": "v"} and obj["object"] == "batch" and obj["errors"] is None


def test_storage_shows_a_blob_only_once_written(tmp_path):
    storage = LocalStorage(tmp_path)
    with pytest.raises(RuntimeError), storage.writer("files/a") as sink:
        sink.write(b"half")
        raise RuntimeError
    assert not storage.exists("files/a") and list((tmp_path / "files").iterdir()) == []
    with storage.writer("files/a") as sink:
        sink.write(b"whole")
    assert storage.reader("files/a").read() == b"whole"
    with pytest.raises(ValueError):
        storage.writer("../escape").__enter__()

"""One `sentinel://` URL, written in each client's own dialect (tasks.redis_client); no server needed."""

from __future__ import annotations

import pytest

from tasks.redis_client import celery_broker, limiter_storage, redacted, sentinel_target


def test_the_sentinel_url_becomes_each_clients_own_dialect():
    url = "sentinel://:p%40ss@s1:26379,s2:26380/inferq/2?sentinel_password=sp"
    broker, transport = celery_broker(url)
    assert broker == "sentinel://:p%40ss@s1:26379/2;sentinel://:p%40ss@s2:26380/2"
    assert transport["master_name"] == "inferq" and transport["sentinel_kwargs"]["password"] == "sp"
    storage, options = limiter_storage(url)
    assert storage == "redis+sentinel://:p%40ss@s1:26379,s2:26380/inferq"
    assert options["db"] == 2 and options["use_replicas"] is False
    assert options["sentinel_kwargs"]["password"] == "sp" and options["sentinel_kwargs"]["username"] is None


def test_a_plain_url_is_left_to_each_client():
    assert sentinel_target("redis://h:6379/0") is None
    assert celery_broker("redis://h:6379/0") == ("redis://h:6379/0", {})
    assert limiter_storage("redis://h:6379/0")[0] == "redis://h:6379/0"


def test_a_sentinel_url_without_a_master_name_is_refused_and_logs_mask_its_password():
    with pytest.raises(ValueError, match="master name"):
        sentinel_target("sentinel://s1:26379")
    target = sentinel_target("sentinel://s1,s2:5000/m")
    assert target.sentinels == (("s1", 26379), ("s2", 5000)) and target.db == 0 and target.password is None
    assert redacted("sentinel://:secret@s1:26379,s2:26379/m/0") == "sentinel://:**@s1:26379,s2:26379/m/0"

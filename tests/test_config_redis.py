"""RAYCHAT_REDIS_URL is checked at boot: one server, or a Redis Cluster by its URL scheme."""

from __future__ import annotations

import pytest

from raychat.config import ConfigError, Settings, load_settings
from storage.redis_store import parse_url


@pytest.mark.parametrize("url", ["redis://cache:6379/0", "rediss://:pw@cache:6380/2", "unix:///run/redis.sock"])
def test_a_single_server_url_is_passed_on_unchanged(url):
    assert parse_url(url) == (False, url)
    assert Settings(redis_url=url).redis_url == url


@pytest.mark.parametrize(("url", "for_redis_py"), [
    ("redis+cluster://node1:7000", "redis://node1:7000"),
    ("rediss+cluster://:secret@clustercfg.chat.use1.cache.amazonaws.com:6379/",
     "rediss://:secret@clustercfg.chat.use1.cache.amazonaws.com:6379"),
    ("REDIS+CLUSTER://node1:7000/0?health_check_interval=5", "redis://node1:7000?health_check_interval=5"),
])
def test_a_cluster_url_names_one_node_in_redis_py_terms(url, for_redis_py):
    assert parse_url(url) == (True, for_redis_py)


@pytest.mark.parametrize(("url", "says"), [
    ("redis+cluster://node1:7000/3", "only database 0"),
    ("redis+cluster:///tmp/redis.sock", "host:port"),
    ("redis+cluster://node1:port", "host:port"),
    ("http://cache:6379", "not a Redis URL scheme"),
    ("cache:6379", "not a Redis URL scheme"),
])
def test_a_bad_url_fails_the_boot_naming_the_variable_never_its_password(url, says):
    with pytest.raises(ValueError, match=says):
        parse_url(url)
    with pytest.raises(ConfigError) as info:
        load_settings(redis_url=url.replace("://", "://:hunter2@", 1) if "://" in url else url)
    assert "RAYCHAT_REDIS_URL" in str(info.value) and says in str(info.value) and "hunter2" not in str(info.value)

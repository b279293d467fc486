"""Push settings are checked at start, each failure naming the variable to change."""

from __future__ import annotations

import pytest

from raychat.config import ConfigError, load_settings


def refused(**settings) -> str:
    with pytest.raises(ConfigError) as err:
        load_settings(**settings)
    return str(err.value)


def test_an_apns_key_needs_its_id_team_and_topic():
    text = refused(push_apns_key_file="/etc/raychat/apns.p8", push_apns_key_id="KEY1234567")
    assert "RAYCHAT_PUSH_APNS_TEAM_ID" in text and "RAYCHAT_PUSH_APNS_TOPIC" in text
    assert "RAYCHAT_PUSH_APNS_KEY_ID," not in text


def test_the_visibility_timeout_must_outlast_a_batch_of_sends():
    assert "RAYCHAT_PUSH_VISIBILITY_TIMEOUT_S" in refused(push_send_timeout_s=10, push_visibility_timeout_s=20)
    assert load_settings(push_send_timeout_s=2, push_visibility_timeout_s=6).push_visibility_timeout_s == 6


def test_a_short_webhook_secret_is_refused_without_being_repeated():
    text = refused(push_webhook_secret="short-secret")
    assert "RAYCHAT_PUSH_WEBHOOK_SECRET" in text and "short-secret" not in text


@pytest.mark.parametrize("entry", ["ftp://files.example.com", "https://", "http://:80/x"])
def test_a_webhook_allowlist_entry_must_be_a_url_prefix_or_a_host(entry):
    assert "RAYCHAT_PUSH_WEBHOOK_ALLOWED" in refused(push_webhook_allowed=entry)


def test_provider_urls_must_be_http_urls():
    assert "RAYCHAT_PUSH_FCM_URL" in refused(push_fcm_url="fcm.googleapis.com")


def test_key_paths_are_made_absolute_for_the_worker(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(push_fcm_service_account="account.json")
    assert s.push_fcm_service_account == tmp_path / "account.json"

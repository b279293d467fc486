"""The provider adapters against local servers playing FCM, APNs (HTTP/2 over TLS) and a webhook
receiver (tests/fixtures_push.py), including ones that fail, time out and say "unregistered"."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl

import httpx
import pytest

from push.ports import Notification, Target
from push.providers import build_providers
from push.providers.apns import ApnsProvider
from push.providers.fcm import FcmProvider
from push.providers.webhook import WebhookProvider, addresses_of
from push.targets import WebhookPolicy
from raychat.clock import SystemClock
from raychat.config import ConfigError, Settings
from storage.embedded import free_port
from tests.fixtures_push import KEY_ID, SLOW_S, TEAM_ID, TOPIC, WEBHOOK_SECRET

TIMEOUT_S = 0.5
NOTE = Notification("c_123", 7, "Alice in Team", "lunch?", "u_alice")
E2EE = Notification("c_123", 8, "New message", None, None)
FCM_TOKEN = "fJ3kAPA91b" * 16
APNS_TOKEN = "ab" * 32


def trust(server) -> ssl.SSLContext:
    """Trust the fake APNs server's self-signed certificate (and nothing else)."""
    return ssl.create_default_context(cafile=str(server.cert_path))


@pytest.fixture
async def fcm(providers_server):
    p = FcmProvider(providers_server.account, providers_server.http_url, SystemClock(), TIMEOUT_S)
    yield p
    await p.close()


@pytest.fixture
async def apns(providers_server):
    client = httpx.AsyncClient(http2=True, verify=trust(providers_server), timeout=TIMEOUT_S)
    p = ApnsProvider(providers_server.apns_key, key_id=KEY_ID, team_id=TEAM_ID, topic=TOPIC,
                     base_url=providers_server.https_url, clock=SystemClock(), timeout_s=TIMEOUT_S, client=client)
    yield p
    await p.close()


@pytest.fixture
async def webhook(providers_server):
    p = WebhookProvider(WEBHOOK_SECRET, WebhookPolicy("http://127.0.0.1"), SystemClock(), TIMEOUT_S)
    yield p
    await p.close()


def fcm_target(token=FCM_TOKEN):
    return Target("d1", "u_bob", "fcm", token)


def apns_target(token=APNS_TOKEN):
    return Target("d2", "u_bob", "apns", token)


def hook_target(server, path="/hooks/bob"):
    return Target("d3", "u_bob", "webhook", server.http_url + path)


# ---- FCM HTTP v1 --------------------------------------------------------------------------------

async def test_fcm_delivers_with_an_oauth_token_and_collapses_per_conversation(fcm, providers_server):
    tokens_before = len(providers_server.oauth_tokens)
    assert (await fcm.send(fcm_target(), NOTE)).kind == "delivered"
    assert (await fcm.send(fcm_target(), NOTE)).kind == "delivered"
    assert len(providers_server.oauth_tokens) == tokens_before + 1, "the access token is cached"
    [first, _] = providers_server.sends("/v1/projects/")
    assert first.path == "/v1/projects/raychat-test/messages:send"
    message = first.json()["message"]
    assert message["token"] == FCM_TOKEN
    assert message["notification"] == {"title": "Alice in Team", "body": "lunch?"}
    assert message["data"] == {"conversation_id": "c_123", "seq": "7", "sender_id": "u_alice"}
    assert message["android"]["collapse_key"] == "c_123" and message["android"]["notification"]["tag"] == "c_123"


async def test_fcm_e2ee_pushes_carry_no_body(fcm, providers_server):
    assert (await fcm.send(fcm_target(), E2EE)).kind == "delivered"
    message = providers_server.sends("/v1/projects/")[0].json()["message"]
    assert message["notification"] == {"title": "New message"} and "sender_id" not in message["data"]


async def test_fcm_unregistered_is_an_invalid_token(fcm):
    assert (await fcm.send(fcm_target("unregistered" * 3), NOTE)).kind == "invalid_token"


async def test_fcm_a_bad_payload_is_rejected_not_an_invalid_token(fcm):
    assert (await fcm.send(fcm_target("badpayload" * 3), NOTE)).kind == "rejected"


async def test_fcm_a_500_is_retried(fcm, providers_server):
    await fcm.send(fcm_target(), NOTE)          # the token is fetched while the server is fine
    providers_server.mode = "fail"
    assert (await fcm.send(fcm_target(), NOTE)).kind == "retry"


async def test_fcm_a_429_is_retried_after_its_retry_after(fcm, providers_server):
    providers_server.mode = "throttle"
    outcome = await fcm.send(fcm_target(), NOTE)
    assert (outcome.kind, outcome.retry_after_s) == ("retry", 7.0)


async def test_fcm_a_timeout_is_retried(fcm, providers_server):
    await fcm.send(fcm_target(), NOTE)
    providers_server.mode = "slow"
    outcome = await fcm.send(fcm_target(), NOTE)
    assert outcome.kind == "retry" and "timed out" in outcome.detail


async def test_fcm_a_revoked_access_token_is_replaced(fcm, providers_server):
    await fcm.send(fcm_target(), NOTE)
    providers_server.oauth_tokens.clear()       # the server forgets every token it issued
    assert (await fcm.send(fcm_target(), NOTE)).kind == "retry"
    assert (await fcm.send(fcm_target(), NOTE)).kind == "delivered"


async def test_fcm_an_unreachable_server_is_retried(providers_server):
    account = {**providers_server.account, "token_uri": f"http://127.0.0.1:{free_port()}/token"}
    p = FcmProvider(account, f"http://127.0.0.1:{free_port()}", SystemClock(), TIMEOUT_S)
    try:
        outcome = await p.send(fcm_target(), NOTE)
        assert outcome.kind == "retry" and "OAuth" in outcome.detail
    finally:
        await p.close()


# ---- APNs over HTTP/2 ---------------------------------------------------------------------------

async def test_apns_delivers_over_http2_with_a_provider_token(apns, providers_server):
    assert (await apns.send(apns_target(), NOTE)).kind == "delivered"
    [seen] = providers_server.sends("/3/device/")
    assert seen.http_version == "2", "APNs speaks only HTTP/2"
    assert seen.path == f"/3/device/{APNS_TOKEN}"
    h = seen.headers
    assert (h["apns-topic"], h["apns-push-type"], h["apns-collapse-id"], h["apns-priority"]) == \
        (TOPIC, "alert", "c_123", "10")
    body = seen.json()
    assert body["aps"]["alert"] == {"title": "Alice in Team", "body": "lunch?"}
    assert body["aps"]["thread-id"] == "c_123" and body["seq"] == 7


async def test_apns_reuses_its_provider_token(apns, providers_server):
    await apns.send(apns_target(), NOTE)
    await apns.send(apns_target(), E2EE)
    first, second = providers_server.sends("/3/device/")
    assert first.headers["authorization"] == second.headers["authorization"]
    assert second.json()["aps"]["alert"] == {"title": "New message"}


async def test_apns_410_unregistered_is_an_invalid_token(apns):
    assert (await apns.send(apns_target("dead" * 16), NOTE)).kind == "invalid_token"


async def test_apns_bad_device_token_is_an_invalid_token(apns):
    assert (await apns.send(apns_target("bad0" * 16), NOTE)).kind == "invalid_token"


async def test_apns_a_500_is_retried(apns, providers_server):
    providers_server.mode = "fail"
    assert (await apns.send(apns_target(), NOTE)).kind == "retry"


async def test_apns_a_timeout_is_retried(apns, providers_server):
    providers_server.mode = "slow"
    assert (await apns.send(apns_target(), NOTE)).kind == "retry"


async def test_apns_a_wrong_topic_is_rejected(providers_server):
    client = httpx.AsyncClient(http2=True, verify=trust(providers_server), timeout=TIMEOUT_S)
    p = ApnsProvider(providers_server.apns_key, key_id=KEY_ID, team_id=TEAM_ID, topic="com.other.app",
                     base_url=providers_server.https_url, clock=SystemClock(), timeout_s=TIMEOUT_S, client=client)
    try:
        outcome = await p.send(apns_target(), NOTE)
        assert outcome.kind == "rejected" and "TopicDisallowed" in outcome.detail
    finally:
        await p.close()


# ---- webhooks -----------------------------------------------------------------------------------

async def test_a_webhook_is_signed_so_the_receiver_can_verify_it(webhook, providers_server):
    assert (await webhook.send(hook_target(providers_server), NOTE)).kind == "delivered"
    [seen] = providers_server.sends("/hooks/")
    stamp = seen.headers["x-raychat-timestamp"]
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + seen.body, hashlib.sha256).hexdigest()
    assert seen.headers["x-raychat-signature"] == f"sha256={expected}"
    assert json.loads(seen.body) == {"type": "message", "device_id": "d3", "conversation_id": "c_123", "seq": 7,
                                     "title": "Alice in Team", "body": "lunch?", "sender_id": "u_alice"}


async def test_a_webhook_signed_with_another_secret_is_refused_by_the_receiver(providers_server):
    p = WebhookProvider("another-secret-" + "x" * 40, WebhookPolicy("http://127.0.0.1"), SystemClock(), TIMEOUT_S)
    try:
        assert (await p.send(hook_target(providers_server), NOTE)).kind == "rejected"
    finally:
        await p.close()


async def test_a_webhook_410_is_an_invalid_token(webhook, providers_server):
    assert (await webhook.send(hook_target(providers_server, "/hooks/unregistered"), NOTE)).kind == "invalid_token"


async def test_a_webhook_400_is_rejected(webhook, providers_server):
    assert (await webhook.send(hook_target(providers_server, "/hooks/badpayload"), NOTE)).kind == "rejected"


@pytest.mark.parametrize("mode", ["fail", "slow", "throttle"])
async def test_a_webhook_that_fails_or_hangs_is_retried(webhook, providers_server, mode):
    providers_server.mode = mode
    assert (await webhook.send(hook_target(providers_server), NOTE)).kind == "retry"


async def test_a_webhook_outside_the_policy_is_never_called(providers_server):
    p = WebhookProvider(WEBHOOK_SECRET, WebhookPolicy(None), SystemClock(), TIMEOUT_S)   # https to public hosts only
    try:
        assert (await p.send(hook_target(providers_server), NOTE)).kind == "rejected"
        assert providers_server.sends("/hooks/") == []
    finally:
        await p.close()


@pytest.mark.parametrize("answers", [["10.0.0.5"], ["93.184.216.34", "127.0.0.1"], ["fd00::1"]])
async def test_a_webhook_host_that_resolves_inside_is_never_called(providers_server, answers):
    """Without an allowlist a host's name is resolved first: one that leads to an internal
    address is refused, not called (the URL check alone cannot see where a name leads)."""
    looked_up = []

    async def resolve(host, port):
        looked_up.append((host, port))
        return answers

    p = WebhookProvider(WEBHOOK_SECRET, WebhookPolicy(None), SystemClock(), TIMEOUT_S, resolve=resolve)
    try:
        outcome = await p.send(Target("d1", "u1", "webhook", "https://hooks.example.com:8443/x"), NOTE)
        assert outcome.kind == "rejected" and "not a public address" in outcome.detail, outcome
        assert looked_up == [("hooks.example.com", 8443)]
    finally:
        await p.close()


async def test_the_default_lookup_resolves_as_the_client_does():
    assert "127.0.0.1" in await addresses_of("localhost", 443)


def test_webhook_breakers_are_per_receiving_host(webhook):
    a = webhook.breaker_key(Target("d1", "u", "webhook", "https://a.example.com/x"))
    assert a == webhook.breaker_key(Target("d2", "v", "webhook", "https://a.example.com/y"))
    assert a != webhook.breaker_key(Target("d3", "w", "webhook", "https://b.example.com/x"))


# ---- configuration ------------------------------------------------------------------------------

def test_only_providers_with_credentials_are_on(providers_server, tmp_path):
    account, key = tmp_path / "account.json", tmp_path / "apns.p8"
    account.write_text(json.dumps(providers_server.account))
    key.write_text(providers_server.apns_key)
    assert build_providers(Settings(), SystemClock()) == {}
    on = build_providers(Settings(push_fcm_service_account=account, push_apns_key_file=key, push_apns_key_id=KEY_ID,
                                  push_apns_team_id=TEAM_ID, push_apns_topic=TOPIC,
                                  push_webhook_secret=WEBHOOK_SECRET), SystemClock())
    assert sorted(on) == ["apns", "fcm", "webhook"]


def test_a_broken_key_file_stops_the_worker_naming_its_variable(tmp_path):
    account = tmp_path / "account.json"
    account.write_text(json.dumps({"project_id": "p", "client_email": "e", "token_uri": "https://t",
                                   "private_key": "not a key"}))
    with pytest.raises(ConfigError, match="RAYCHAT_PUSH_FCM_SERVICE_ACCOUNT: .*RSA private key"):
        build_providers(Settings(push_fcm_service_account=account), SystemClock())
    key = tmp_path / "apns.p8"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="RAYCHAT_PUSH_APNS_KEY_FILE"):
        build_providers(Settings(push_apns_key_file=key, push_apns_key_id=KEY_ID, push_apns_team_id=TEAM_ID,
                                 push_apns_topic=TOPIC), SystemClock())


assert SLOW_S > TIMEOUT_S * 2, "the slow server must outlast the client's timeout"

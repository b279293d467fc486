"""The token and OpenID Connect settings are checked at boot, with a sentence naming the variable."""

from __future__ import annotations

import json

import pytest

from raychat.config import ConfigError, Settings, jwt_key_id, load_settings

SECRET = "s" * 40
NEXT = "n" * 40


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ("RAYCHAT_JWT_SECRET", "RAYCHAT_JWT_KEYS", "RAYCHAT_JWT_SIGNING_KID", "RAYCHAT_OIDC_ISSUERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _boot_error(monkeypatch, **env) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return str(info.value)


def test_jwt_keys_read_as_kid_equals_secret_pairs(clean_env):
    clean_env.setenv("RAYCHAT_JWT_KEYS", f"old={SECRET}, next={NEXT}==")
    assert load_settings().jwt_keys == {"old": SECRET, "next": NEXT + "=="}


def test_jwt_keys_read_as_a_json_object(clean_env):
    clean_env.setenv("RAYCHAT_JWT_KEYS", json.dumps({"old": SECRET, "next": NEXT}))
    assert load_settings().jwt_keys == {"old": SECRET, "next": NEXT}


def test_jwt_keys_survive_the_trip_across_ray(clean_env):
    settings = Settings(jwt_keys=f"next={NEXT}")
    assert Settings.from_dict(settings.to_dict()).jwt_keys == {"next": NEXT}


@pytest.mark.parametrize("value", ["no-equals-sign", "{not json", '{"k": 1}', f"../etc={SECRET}",
                                   f"a={SECRET},a={NEXT}"])
def test_malformed_jwt_keys_fail_at_boot_naming_the_variable(clean_env, value):
    assert "RAYCHAT_JWT_KEYS" in _boot_error(clean_env, RAYCHAT_JWT_KEYS=value)


def test_a_short_key_fails_at_boot_without_showing_it(clean_env):
    message = _boot_error(clean_env, RAYCHAT_JWT_KEYS="k=short-secret-value")
    assert "RAYCHAT_JWT_KEYS" in message and "32 bytes" in message
    assert "short-secret-value" not in message


def test_a_signing_kid_that_names_no_key_fails_at_boot(clean_env):
    message = _boot_error(clean_env, RAYCHAT_JWT_SECRET=SECRET, RAYCHAT_JWT_SIGNING_KID="nope")
    assert "RAYCHAT_JWT_SIGNING_KID" in message and jwt_key_id(SECRET) in message


def test_the_signing_kid_may_name_the_secrets_kid_or_an_extra_key(clean_env):
    clean_env.setenv("RAYCHAT_JWT_SECRET", SECRET)
    clean_env.setenv("RAYCHAT_JWT_KEYS", f"next={NEXT}")
    for kid in (jwt_key_id(SECRET), "next"):
        clean_env.setenv("RAYCHAT_JWT_SIGNING_KID", kid)
        assert load_settings().jwt_signing_kid == kid


def test_an_extra_key_under_the_secrets_kid_with_another_secret_fails_at_boot(clean_env):
    message = _boot_error(clean_env, RAYCHAT_JWT_SECRET=SECRET, RAYCHAT_JWT_KEYS=f"{jwt_key_id(SECRET)}={NEXT}")
    assert "RAYCHAT_JWT_KEYS" in message


def test_oidc_issuers_read_as_a_json_list(clean_env):
    clean_env.setenv("RAYCHAT_OIDC_ISSUERS", json.dumps([
        {"issuer": "https://accounts.google.com", "audience": "client-1",
         "jwks_uri": "https://www.googleapis.com/oauth2/v3/certs"},
        {"issuer": "https://id.example", "audience": "c", "jwks_uri": "https://id.example/jwks", "algorithms": ["ES256"]},
    ]))
    google, other = load_settings().oidc_issuers
    assert (google.issuer, google.audience, google.algorithms) == ("https://accounts.google.com", "client-1", ("RS256",))
    assert other.algorithms == ("ES256",)


@pytest.mark.parametrize("entry", [
    {"issuer": "i", "audience": "a", "jwks_uri": "file:///etc/passwd"},
    {"issuer": "i", "audience": "a", "jwks_uri": "https://x/jwks", "algorithms": ["HS256"]},
    {"issuer": "i", "audience": "a", "jwks_uri": "https://x/jwks", "algorithms": ["none"]},
    {"issuer": "i", "audience": "a", "jwks_uri": "https://x/jwks", "algorithms": []},
    {"issuer": "i", "jwks_uri": "https://x/jwks"},
    {"issuer": "i", "audience": "a", "jwks_uri": "https://x/jwks", "jku": "https://y"},
])
def test_bad_oidc_issuers_fail_at_boot_naming_the_variable(clean_env, entry):
    assert "RAYCHAT_OIDC_ISSUERS" in _boot_error(clean_env, RAYCHAT_OIDC_ISSUERS=json.dumps([entry]))


def test_an_issuer_listed_twice_fails_at_boot(clean_env):
    entry = {"issuer": "i", "audience": "a", "jwks_uri": "https://x/jwks"}
    assert "RAYCHAT_OIDC_ISSUERS" in _boot_error(clean_env, RAYCHAT_OIDC_ISSUERS=json.dumps([entry, entry]))

"""ID-token verification against a JWKS served over real HTTP by a local provider (tests/fixtures_oidc.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from gateway.oidc import LEEWAY_S, OidcVerifier
from raychat.clock import FakeClock
from raychat.config import OidcIssuer
from raychat.errors import Unauthorized, Unavailable
from tests.fixtures_oidc import OidcProvider, SigningKey

TTL_S = 3600
REFETCH_S = 60


@pytest.fixture
def provider():
    p = OidcProvider()
    yield p
    p.stop()


@pytest.fixture
def clock():
    return FakeClock(start=1_900_000_000.0)


@pytest.fixture
async def verifier(provider, clock):
    v = OidcVerifier([OidcIssuer(**provider.config)], clock, ttl_s=TTL_S, refetch_s=REFETCH_S)
    yield v
    await v.aclose()


def _token(provider, clock, key=None, headers=None, **changes):
    return provider.sign(provider.claims(now=clock.now(), **changes), key=key, headers=headers)


async def _refused(verifier, token, nonce=None) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        await verifier.verify(token, nonce)
    return info.value


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


# ---- a valid token ---------------------------------------------------------------------------------

async def test_a_valid_id_token_gives_issuer_and_subject(provider, clock, verifier):
    who = await verifier.verify(_token(provider, clock, sub="alice-123"))
    assert (who.issuer, who.subject) == (provider.issuer, "alice-123")


async def test_profile_claims_are_carried(provider, clock, verifier):
    who = await verifier.verify(_token(provider, clock, preferred_username="Alice", email="a@example.com",
                                       name="Alice A."))
    assert (who.preferred_username, who.email, who.name) == ("Alice", "a@example.com", "Alice A.")


async def test_an_es256_issuer_is_verified_with_its_ec_key(clock):
    provider = OidcProvider(alg="ES256")
    verifier = OidcVerifier([OidcIssuer(**provider.config)], clock)
    try:
        assert (await verifier.verify(_token(provider, clock, sub="s"))).subject == "s"
    finally:
        await verifier.aclose()
        provider.stop()


# ---- forged ----------------------------------------------------------------------------------------

async def test_a_token_signed_by_another_key_under_the_providers_kid_is_refused(provider, clock, verifier):
    forger = SigningKey(kid=provider.keys[0].kid)
    assert "signature" in (await _refused(verifier, _token(provider, clock, key=forger))).message


async def test_a_token_naming_a_key_the_provider_does_not_publish_is_refused(provider, clock, verifier):
    assert "unknown key" in (await _refused(verifier, _token(provider, clock, key=SigningKey()))).message


async def test_a_tampered_payload_is_refused(provider, clock, verifier):
    header, _, signature = _token(provider, clock, sub="alice").split(".")
    forged = _b64(json.dumps(provider.claims(now=clock.now(), sub="admin")).encode())
    await _refused(verifier, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_alg_none_is_refused_without_fetching_keys(provider, clock, verifier, alg):
    claims = _b64(json.dumps(provider.claims(now=clock.now())).encode())
    header = _b64(json.dumps({"alg": alg, "kid": provider.keys[0].kid}).encode())
    await _refused(verifier, f"{header}.{claims}.")
    assert provider.requests == 0


async def test_hs256_signed_with_the_providers_public_key_is_refused(provider, clock, verifier):
    """Algorithm confusion: the public key is public, so an HMAC made with it proves nothing."""
    public = provider.keys[0].private.public_key()
    claims = provider.claims(now=clock.now())
    header = {"alg": "HS256", "kid": provider.keys[0].kid}
    for secret in (public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
                   json.dumps(provider.keys[0].jwk).encode()):
        await _refused(verifier, _hs256(header, claims, secret))


async def test_an_hmac_key_in_the_jwks_is_never_used(provider, clock, verifier):
    """A symmetric key published in a JWKS is known to everyone; it verifies nothing."""
    secret = b"s" * 32
    provider.keys.append(type("Oct", (), {"jwk": {"kty": "oct", "kid": "oct-1", "k": _b64(secret)}})())
    token = _hs256({"alg": "HS256", "kid": "oct-1"}, provider.claims(now=clock.now()), secret)
    await _refused(verifier, token)


async def test_an_rs256_token_is_refused_by_an_issuer_pinned_to_es256(clock):
    rsa_provider = OidcProvider(alg="RS256")
    pinned = OidcIssuer(**{**rsa_provider.config, "algorithms": ["ES256"]})
    verifier = OidcVerifier([pinned], clock)
    try:
        await _refused(verifier, _token(rsa_provider, clock))
        assert rsa_provider.requests == 0
    finally:
        await verifier.aclose()
        rsa_provider.stop()


async def test_jku_header_is_never_fetched(provider, clock, verifier):
    """A token pointing at the attacker's own JWKS is checked against the configured one only."""
    attacker = OidcProvider()
    try:
        token = provider.sign(provider.claims(now=clock.now()), key=attacker.keys[0],
                              headers={"jku": attacker.jwks_uri, "x5u": attacker.jwks_uri})
        await _refused(verifier, token)
        assert attacker.requests == 0
    finally:
        attacker.stop()


async def test_a_path_like_kid_is_an_unknown_key(provider, clock, verifier):
    key = SigningKey(kid="../../../../etc/passwd")
    assert "unknown key" in (await _refused(verifier, _token(provider, clock, key=key))).message


# ---- claims ----------------------------------------------------------------------------------------

async def test_an_expired_token_is_refused(provider, clock, verifier):
    token = _token(provider, clock)
    clock.advance(600 + LEEWAY_S + 1)
    assert "expired" in (await _refused(verifier, token)).message


async def test_a_token_issued_in_the_future_is_refused(provider, clock, verifier):
    token = _token(provider, clock, iat=int(clock.now()) + 3600, exp=int(clock.now()) + 7200)
    assert "not yet valid" in (await _refused(verifier, token)).message


async def test_a_future_nbf_is_refused(provider, clock, verifier):
    assert "not yet valid" in (await _refused(verifier, _token(provider, clock, nbf=int(clock.now()) + 600))).message


@pytest.mark.parametrize("claim", ["exp", "iat", "sub", "aud", "iss"])
async def test_a_missing_required_claim_is_refused(provider, clock, verifier, claim):
    await _refused(verifier, _token(provider, clock, **{claim: None}))


async def test_a_wrong_audience_is_refused(provider, clock, verifier):
    assert "another client" in (await _refused(verifier, _token(provider, clock, aud="someone-else"))).message


async def test_an_audience_list_with_our_client_id_is_accepted(provider, clock, verifier):
    token = _token(provider, clock, aud=["other", provider.audience], azp=provider.audience, sub="s")
    assert (await verifier.verify(token)).subject == "s"


async def test_an_azp_naming_another_client_is_refused(provider, clock, verifier):
    await _refused(verifier, _token(provider, clock, aud=["other", provider.audience], azp="other"))


async def test_an_unconfigured_issuer_is_refused_without_fetching_keys(provider, clock, verifier):
    assert "configured issuer" in (await _refused(verifier, _token(provider, clock, iss="https://evil.example"))).message
    assert provider.requests == 0


async def test_a_subject_longer_than_255_characters_is_refused(provider, clock, verifier):
    await _refused(verifier, _token(provider, clock, sub="s" * 256))


# ---- nonce -----------------------------------------------------------------------------------------

async def test_a_matching_nonce_is_accepted(provider, clock, verifier):
    assert (await verifier.verify(_token(provider, clock, nonce="n-1", sub="s"), "n-1")).subject == "s"


async def test_a_wrong_nonce_is_refused(provider, clock, verifier):
    assert "nonce" in (await _refused(verifier, _token(provider, clock, nonce="n-1"), "n-2")).message


async def test_a_nonce_asked_for_but_absent_from_the_token_is_refused(provider, clock, verifier):
    await _refused(verifier, _token(provider, clock), "n-1")


async def test_a_lone_surrogate_nonce_is_refused_not_an_error(provider, clock, verifier):
    await _refused(verifier, _token(provider, clock, nonce="n-1"), "\ud800")


async def test_a_token_nonce_is_not_checked_when_none_is_given(provider, clock, verifier):
    assert (await verifier.verify(_token(provider, clock, nonce="n-1", sub="s"))).subject == "s"


# ---- keys: kid, caching, rotation ------------------------------------------------------------------

async def test_a_token_without_kid_uses_the_only_key(provider, clock, verifier):
    token = jwt.encode(provider.claims(now=clock.now(), sub="s"), provider.keys[0].private, algorithm="RS256")
    assert (await verifier.verify(token)).subject == "s"


async def test_a_token_without_kid_is_refused_when_the_provider_has_several_keys(provider, clock, verifier):
    provider.keys.append(SigningKey())
    token = jwt.encode(provider.claims(now=clock.now()), provider.keys[0].private, algorithm="RS256")
    await _refused(verifier, token)


async def test_the_jwks_is_fetched_once_and_cached(provider, clock, verifier):
    for _ in range(3):
        await verifier.verify(_token(provider, clock))
    assert provider.requests == 1


async def test_the_jwks_is_fetched_again_after_its_ttl(provider, clock, verifier):
    await verifier.verify(_token(provider, clock))
    clock.advance(TTL_S)
    await verifier.verify(_token(provider, clock))
    assert provider.requests == 2


async def test_a_key_the_provider_rotated_in_is_found_by_one_refetch(provider, clock, verifier):
    await verifier.verify(_token(provider, clock))
    clock.advance(REFETCH_S)
    provider.keys.insert(0, SigningKey())
    assert (await verifier.verify(_token(provider, clock, sub="s"))).subject == "s"
    assert provider.requests == 2


async def test_unknown_kids_refetch_at_most_once_per_interval(provider, clock, verifier):
    await verifier.verify(_token(provider, clock))
    clock.advance(REFETCH_S)
    for _ in range(10):
        await _refused(verifier, _token(provider, clock, key=SigningKey()))
    assert provider.requests == 2


async def test_an_unknown_kid_may_refetch_again_after_the_interval(provider, clock, verifier):
    await verifier.verify(_token(provider, clock))
    clock.advance(REFETCH_S)
    await _refused(verifier, _token(provider, clock, key=SigningKey()))
    clock.advance(REFETCH_S)
    await _refused(verifier, _token(provider, clock, key=SigningKey()))
    assert provider.requests == 3


async def test_an_unreachable_provider_with_nothing_cached_is_unavailable(provider, clock, verifier):
    provider.status = 500
    with pytest.raises(Unavailable):
        await verifier.verify(_token(provider, clock))


async def test_keys_fetched_before_stay_in_use_while_the_provider_is_down(provider, clock, verifier):
    await verifier.verify(_token(provider, clock))
    provider.status = 500
    clock.advance(TTL_S)
    assert (await verifier.verify(_token(provider, clock, sub="s"))).subject == "s"
    assert provider.requests == 2


# ---- malformed -------------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["", "garbage", "a.b.c", "....", None, 42, "x" * 20_000,
                                   "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "tok\ud800en.a.b"])
async def test_malformed_tokens_are_refused(verifier, token):
    await _refused(verifier, token)

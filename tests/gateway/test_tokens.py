import base64
import hashlib
import hmac
import json
import os
import socket
import stat

import jwt
import pytest
from hypothesis import given, settings, strategies as st

from gateway.tokens import MAX_TOKEN_CHARS, TokenIssuer, key_id, load_or_create_secret
from raychat.clock import FakeClock
from raychat.errors import Unauthorized

SECRET = "s" * 64
OTHER_SECRET = "o" * 64
TTL = 900
LEEWAY = 5
USER = "u-123"
KID = key_id(SECRET)


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def issuer(clock):
    return TokenIssuer(SECRET, "raychat", "raychat", TTL, clock, leeway_s=LEEWAY)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_token(header: dict, claims: dict, key: bytes | None) -> str:
    """A compact JWS built by hand, so the tests do not trust PyJWT's encoder for attacks.
    It names our key (kid) unless the header says otherwise; a None value drops that field."""
    header = {k: v for k, v in {"kid": KID, **header}.items() if v is not None}
    signing_input = _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
    sig = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + _b64(sig)


def _claims(clock, **changes):
    now = int(clock.now())
    claims = {"sub": USER, "iat": now, "nbf": now, "exp": now + TTL, "iss": "raychat", "aud": "raychat",
              "jti": "j-1"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(clock, headers=None, secret=SECRET, algorithm="HS256", **changes):
    """Signed by PyJWT with ``secret``, naming our key's kid unless ``headers`` says otherwise
    (an attacker copies the kid from any token they were given)."""
    headers = {k: v for k, v in {"kid": KID, **(headers or {})}.items() if v is not None}
    return jwt.encode(_claims(clock, **changes), secret, algorithm=algorithm, headers=headers)


def _rejected(issuer, token) -> Unauthorized:
    with pytest.raises(Unauthorized) as info:
        issuer.verify(token)
    return info.value


# --- issue and verify ----------------------------------------------------------------------------


def test_round_trip_returns_the_user_id(issuer):
    token, _ = issuer.issue(USER)
    assert issuer.verify(token) == USER


def test_issue_returns_the_ttl_as_expires_in(issuer):
    assert issuer.issue(USER)[1] == TTL


def test_issued_token_carries_the_standard_claims(issuer, clock):
    token, _ = issuer.issue(USER)
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(clock.now())
    assert claims["sub"] == USER
    assert claims["iat"] == claims["nbf"] == now
    assert claims["exp"] == now + TTL
    assert (claims["iss"], claims["aud"]) == ("raychat", "raychat")
    assert isinstance(claims["jti"], str) and claims["jti"]


def test_issued_token_is_hs256(issuer):
    token, _ = issuer.issue(USER)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_each_token_has_a_unique_jti(issuer):
    jtis = {jwt.decode(issuer.issue(USER)[0], options={"verify_signature": False})["jti"] for _ in range(5)}
    assert len(jtis) == 5


# --- time, from the injected clock ---------------------------------------------------------------


def test_token_is_valid_until_its_expiry(issuer, clock):
    token, _ = issuer.issue(USER)
    clock.advance(TTL - 1)
    assert issuer.verify(token) == USER


def test_token_expires_after_ttl_plus_leeway(issuer, clock):
    token, _ = issuer.issue(USER)
    clock.advance(TTL + LEEWAY + 1)
    assert "expired" in _rejected(issuer, token).message


def test_time_comes_from_the_injected_clock_not_the_wall_clock():
    """A token issued and checked at a 2001 FakeClock time is valid, though long past on the wall clock."""
    clock = FakeClock(start=1_000_000_000.0)
    issuer = TokenIssuer(SECRET, "raychat", "raychat", TTL, clock)
    token, _ = issuer.issue(USER)
    assert issuer.verify(token) == USER


def test_future_nbf_is_rejected(issuer, clock):
    token = _signed(clock, nbf=int(clock.now()) + 60)
    assert "not yet valid" in _rejected(issuer, token).message


def test_future_nbf_becomes_valid_when_the_clock_reaches_it(issuer, clock):
    token = _signed(clock, nbf=int(clock.now()) + 60)
    clock.advance(60)
    assert issuer.verify(token) == USER


def test_nbf_within_leeway_is_accepted(issuer, clock):
    """Replicas' clocks may differ by a few seconds."""
    token = _signed(clock, nbf=int(clock.now()) + LEEWAY)
    assert issuer.verify(token) == USER


def test_iat_in_the_future_is_rejected(issuer, clock):
    token = _signed(clock, iat=int(clock.now()) + 3600)
    assert "not yet valid" in _rejected(issuer, token).message


@pytest.mark.parametrize("exp", ["tomorrow", True, [1], float("inf"), float("nan")])
def test_non_numeric_exp_is_rejected(issuer, clock, exp):
    """exp must be a finite JSON number; Python's json would otherwise let NaN / Infinity through."""
    token = _raw_token({"alg": "HS256", "typ": "JWT"}, _claims(clock, exp=exp), SECRET.encode())
    _rejected(issuer, token)


# --- claims --------------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
def test_missing_required_claim_is_rejected(issuer, clock, claim):
    token = _signed(clock, **{claim: None})
    assert claim in _rejected(issuer, token).message


def test_wrong_audience_is_rejected(issuer, clock):
    _rejected(issuer, _signed(clock, aud="another-service"))


def test_wrong_issuer_is_rejected(issuer, clock):
    _rejected(issuer, _signed(clock, iss="evil"))


@pytest.mark.parametrize("sub", ["", 42])
def test_empty_or_non_string_subject_is_rejected(issuer, clock, sub):
    token = _raw_token({"alg": "HS256", "typ": "JWT"}, _claims(clock, sub=sub), SECRET.encode())
    _rejected(issuer, token)


# --- signature and algorithm ---------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_is_rejected(issuer, clock, alg):
    token = _raw_token({"alg": alg, "typ": "JWT"}, _claims(clock), key=None)
    _rejected(issuer, token)


def test_hs256_signed_with_another_secret_is_rejected(issuer, clock):
    _rejected(issuer, _signed(clock, secret=OTHER_SECRET))


def test_tampered_payload_is_rejected(issuer, clock):
    token, _ = issuer.issue(USER)
    header, _, signature = token.split(".")
    forged = _b64(json.dumps(_claims(clock, sub="admin")).encode())
    _rejected(issuer, f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_are_rejected_even_with_the_right_secret(issuer, clock, alg):
    """Only HS256 is pinned; the token's own alg header never chooses the algorithm."""
    _rejected(issuer, _signed(clock, algorithm=alg))


def test_rs256_token_is_rejected(issuer, clock):
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _rejected(issuer, jwt.encode(_claims(clock), key, algorithm="RS256"))


def test_rs256_header_over_an_hmac_signature_is_rejected(issuer, clock):
    """Algorithm confusion: an HMAC made with our secret but labelled RS256 is not accepted."""
    token = _raw_token({"alg": "RS256", "typ": "JWT"}, _claims(clock), SECRET.encode())
    _rejected(issuer, token)


# --- key-locating headers ------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    """Records, and refuses, every attempt to resolve or connect."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_jku_and_x5u_headers_are_never_fetched(issuer, clock, no_network):
    """A token naming remote keys still verifies by our secret alone, with no network call."""
    headers = {"jku": "http://127.0.0.1:1/jwks.json", "x5u": "http://127.0.0.1:1/cert.pem"}
    assert issuer.verify(_signed(clock, headers=headers)) == USER
    assert no_network == []


def test_jku_pointing_at_an_attacker_key_is_rejected(issuer, clock, no_network):
    headers = {"jku": "http://127.0.0.1:1/jwks.json"}
    _rejected(issuer, _signed(clock, headers=headers, secret=OTHER_SECRET))
    assert no_network == []


def test_path_like_kid_is_an_unknown_key(issuer, clock):
    """A kid naming a file is only looked up in the key dictionary: unknown, even when the
    signature is made with our own secret."""
    assert "unknown key" in _rejected(issuer, _signed(clock, headers={"kid": "../../../../../../dev/null"})).message


def test_path_like_kid_with_an_empty_key_signature_is_rejected(issuer, clock):
    """The classic kid=/dev/null attack signs with the empty key; it must not verify."""
    token = _raw_token({"alg": "HS256", "typ": "JWT", "kid": "../../../../../../dev/null"}, _claims(clock), b"")
    _rejected(issuer, token)


# --- keys: kid lookup and rotation ---------------------------------------------------------------

NEXT_SECRET = "n" * 64
NEXT = "2031-01"


def _signed_by(token: str, secret: str) -> bool:
    """True if HS256 with ``secret`` verifies the token's signature (times are the FakeClock's)."""
    signing_input, _, sig = token.rpartition(".")
    return hmac.compare_digest(_b64(hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()), sig)


def _issuer(clock, **keys):
    return TokenIssuer(SECRET, "raychat", "raychat", TTL, clock, leeway_s=LEEWAY, **keys)


def test_kid_of_a_secret_is_the_first_8_hex_digits_of_its_sha256():
    assert key_id(SECRET) == hashlib.sha256(SECRET.encode()).hexdigest()[:8]


def test_issued_token_names_the_signing_key_in_its_kid_header(issuer):
    token, _ = issuer.issue(USER)
    assert jwt.get_unverified_header(token)["kid"] == KID


def test_check_tells_when_the_token_expires(issuer, clock):
    token, _ = issuer.issue(USER)
    access = issuer.check(token)
    assert (access.user_id, access.expires_at) == (USER, int(clock.now()) + TTL)


def test_token_without_kid_is_rejected(issuer, clock):
    """Every token we issue names its key; one that names none was not made by us."""
    assert "no key" in _rejected(issuer, _signed(clock, headers={"kid": None})).message


@pytest.mark.parametrize("kid", ["ffffffff", "", KID[:7], KID + " "])
def test_unknown_kid_is_rejected_even_when_signed_with_a_known_secret(issuer, clock, kid):
    assert "unknown key" in _rejected(issuer, _signed(clock, headers={"kid": kid})).message


@pytest.mark.parametrize("kid", [42, None, ["a"], {"k": "v"}, True])
def test_non_string_kid_is_rejected(issuer, clock, kid):
    token = _raw_token({"alg": "HS256", "typ": "JWT"}, _claims(clock), SECRET.encode())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    _, payload, _ = token.split(".")
    signing_input = f"{header}.{payload}"
    sig = _b64(hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest())
    _rejected(issuer, f"{signing_input}.{sig}")


def test_a_known_kid_with_another_keys_signature_is_rejected(clock):
    """The kid picks the one secret that must have signed; a signature by another known key fails."""
    issuer = _issuer(clock, extra_keys={NEXT: NEXT_SECRET})
    _rejected(issuer, _signed(clock, headers={"kid": NEXT}, secret=SECRET))


def test_extra_keys_verify_tokens_that_name_them(clock):
    issuer = _issuer(clock, extra_keys={NEXT: NEXT_SECRET})
    assert issuer.verify(_signed(clock, headers={"kid": NEXT}, secret=NEXT_SECRET)) == USER


def test_extra_keys_do_not_sign_unless_chosen(clock):
    token, _ = _issuer(clock, extra_keys={NEXT: NEXT_SECRET}).issue(USER)
    assert jwt.get_unverified_header(token)["kid"] == KID
    assert _signed_by(token, SECRET)


def test_signing_kid_chooses_the_signer(clock):
    token, _ = _issuer(clock, extra_keys={NEXT: NEXT_SECRET}, signing_kid=NEXT).issue(USER)
    assert jwt.get_unverified_header(token)["kid"] == NEXT
    assert _signed_by(token, NEXT_SECRET)


def test_rotation_never_refuses_a_token_that_has_not_expired(clock):
    """The three deploys of a rotation (add the next key; sign with it; drop the old one) run as a
    rolling update: replicas of neighbouring steps serve side by side, and every token one of
    them issued verifies on all of them until it expires. Nobody is logged out."""
    before = _issuer(clock)
    step1 = _issuer(clock, extra_keys={NEXT: NEXT_SECRET})
    step2 = _issuer(clock, extra_keys={NEXT: NEXT_SECRET}, signing_kid=NEXT)
    # Step 3 keeps only the next key, now as RAYCHAT_JWT_SECRET, with its old name kept as a kid.
    step3 = TokenIssuer(NEXT_SECRET, "raychat", "raychat", TTL, clock, leeway_s=LEEWAY,
                        extra_keys={NEXT: NEXT_SECRET}, signing_kid=NEXT)
    for side_by_side in ([before, step1], [step1, step2], [step2, step3]):
        for maker in side_by_side:
            token, _ = maker.issue(USER)
            assert all(checker.verify(token) == USER for checker in side_by_side)
    # Step 3 ships once the old signer's last tokens are past their TTL: it no longer knows that key.
    old, _ = step1.issue(USER)
    assert "unknown key" in _rejected(step3, old).message


def test_a_dropped_key_is_unknown(clock):
    """Removing a key from the configuration is how a leaked key is revoked."""
    token, _ = _issuer(clock, extra_keys={NEXT: NEXT_SECRET}, signing_kid=NEXT).issue(USER)
    assert "unknown key" in _rejected(_issuer(clock), token).message


def test_signing_kid_that_names_no_key_is_refused(clock):
    with pytest.raises(ValueError, match="RAYCHAT_JWT_SIGNING_KID"):
        _issuer(clock, extra_keys={NEXT: NEXT_SECRET}, signing_kid="nope")


def test_short_extra_key_is_refused(clock):
    with pytest.raises(ValueError, match="RAYCHAT_JWT_KEYS"):
        _issuer(clock, extra_keys={NEXT: "short"})


def test_extra_key_reusing_the_secrets_kid_with_another_secret_is_refused(clock):
    """Two secrets under one kid would make verification depend on which one won."""
    with pytest.raises(ValueError, match="RAYCHAT_JWT_KEYS"):
        _issuer(clock, extra_keys={KID: NEXT_SECRET})


# --- malformed input -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, 42, b"a.b.c", ["a.b.c"], ""])
def test_non_string_or_empty_token_is_rejected(issuer, token):
    _rejected(issuer, token)


def test_oversized_token_is_rejected_even_if_validly_signed(issuer, clock):
    token = _signed(clock, padding="x" * MAX_TOKEN_CHARS)
    assert len(token) > MAX_TOKEN_CHARS
    assert "too long" in _rejected(issuer, token).message


@pytest.mark.parametrize("token", ["garbage", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln",
                                   "tok\ud800en.a.b", "é.é.é"])
def test_malformed_token_is_rejected(issuer, token):
    _rejected(issuer, token)


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_text_is_rejected_with_unauthorized_only(text):
    """Whatever arrives, verify raises Unauthorized: never another exception, never a 500."""
    issuer = TokenIssuer(SECRET, "raychat", "raychat", TTL, FakeClock())
    with pytest.raises(Unauthorized):
        issuer.verify(text)


def test_error_messages_never_echo_the_token(issuer, clock):
    cases = [
        _signed(clock, secret=OTHER_SECRET),
        _signed(clock, aud="another-service"),
        _signed(clock, exp=int(clock.now()) - 3600),
        "garbage-token-" + "q" * 40,
    ]
    for token in cases:
        message = _rejected(issuer, token).message
        assert token not in message
        assert not any(part and part in message for part in token.split("."))
        assert len(message) < 80


# --- construction --------------------------------------------------------------------------------


def test_short_secret_is_refused(clock):
    """RFC 7518 §3.2: an HS256 key is at least 256 bits."""
    with pytest.raises(ValueError, match="RAYCHAT_JWT_SECRET"):
        TokenIssuer("short", "raychat", "raychat", TTL, clock)


@pytest.mark.parametrize("leeway", [-1, 6])
def test_leeway_outside_0_to_5_seconds_is_refused(clock, leeway):
    with pytest.raises(ValueError):
        TokenIssuer(SECRET, "raychat", "raychat", TTL, clock, leeway_s=leeway)


# --- the secret file -----------------------------------------------------------------------------


def test_secret_file_is_created_with_mode_0600(tmp_path):
    secret = load_or_create_secret(tmp_path)
    path = tmp_path / "jwt.secret"
    assert path.read_text() == secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_secret_is_long_enough_for_hs256(tmp_path):
    assert len(load_or_create_secret(tmp_path).encode()) >= 32


def test_secret_file_is_reused(tmp_path):
    first = load_or_create_secret(tmp_path)
    mtime = (tmp_path / "jwt.secret").stat().st_mtime_ns
    assert load_or_create_secret(tmp_path) == first
    assert (tmp_path / "jwt.secret").stat().st_mtime_ns == mtime


def test_an_existing_secret_file_is_read_without_its_newline(tmp_path):
    (tmp_path / "jwt.secret").write_text("operator-provided-secret-0123456789abcdef\n")
    assert load_or_create_secret(tmp_path) == "operator-provided-secret-0123456789abcdef"


def test_missing_data_dir_is_created(tmp_path):
    data_dir = tmp_path / "var" / "raychat"
    load_or_create_secret(data_dir)
    assert (data_dir / "jwt.secret").is_file()


def test_no_temporary_file_is_left_behind(tmp_path):
    load_or_create_secret(tmp_path)
    assert os.listdir(tmp_path) == ["jwt.secret"]


def test_a_secret_created_by_another_process_first_wins(tmp_path, monkeypatch):
    """If the file appears between our read and our link, we use the one on disk, not ours."""
    import gateway.tokens as tokens

    real_link = os.link

    def racing_link(src, dst):
        (tmp_path / "jwt.secret").write_text("the-other-replicas-secret-0123456789abcdef")
        return real_link(src, dst)

    monkeypatch.setattr(tokens.os, "link", racing_link)
    assert load_or_create_secret(tmp_path) == "the-other-replicas-secret-0123456789abcdef"
    assert os.listdir(tmp_path) == ["jwt.secret"]


def test_loaded_secret_works_with_the_issuer(tmp_path, clock):
    issuer = TokenIssuer(load_or_create_secret(tmp_path), "raychat", "raychat", TTL, clock)
    assert issuer.verify(issuer.issue(USER)[0]) == USER

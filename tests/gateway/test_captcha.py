"""The siteverify CAPTCHA adapter against a real (local) verifier server."""

from __future__ import annotations

import pytest

from gateway import captcha
from gateway.captcha import SiteVerify
from raychat.errors import Forbidden, Invalid, Unavailable
from storage.embedded import free_port


async def test_the_passing_token_verifies(captcha_verifier):
    v = SiteVerify(captcha_verifier.url, captcha_verifier.secret)
    assert await v.verify(captcha_verifier.pass_token, "203.0.113.7")


async def test_the_secret_token_and_client_ip_are_posted_as_a_form(captcha_verifier):
    v = SiteVerify(captcha_verifier.url, captcha_verifier.secret)
    await v.verify("a-token", "203.0.113.7")
    assert captcha_verifier.requests[-1] == {"secret": captcha_verifier.secret, "response": "a-token",
                                             "remoteip": "203.0.113.7"}


async def test_another_token_fails(captcha_verifier):
    v = SiteVerify(captcha_verifier.url, captcha_verifier.secret)
    assert not await v.verify("forged", "203.0.113.7")


async def test_a_wrong_secret_fails(captcha_verifier):
    v = SiteVerify(captcha_verifier.url, "not-our-secret")
    assert not await v.verify(captcha_verifier.pass_token, "203.0.113.7")


async def test_an_answer_that_is_not_json_fails(captcha_verifier):
    v = SiteVerify(captcha_verifier.url.replace("/siteverify", "/broken"), captcha_verifier.secret)
    assert not await v.verify(captcha_verifier.pass_token, "203.0.113.7")


async def test_an_unreachable_provider_is_unavailable():
    v = SiteVerify(f"http://127.0.0.1:{free_port()}/siteverify", "s", timeout_s=2)
    with pytest.raises(Unavailable):
        await v.verify("t", "203.0.113.7")


def test_with_captcha_off_no_token_is_needed():
    captcha.require_token(None, None)


def test_with_captcha_on_a_missing_token_is_invalid_naming_the_field(captcha_verifier):
    with pytest.raises(Invalid, match="^captcha_token"):
        captcha.require_token(SiteVerify(captcha_verifier.url, captcha_verifier.secret), None)


async def test_with_captcha_on_a_failed_check_is_forbidden(captcha_verifier):
    with pytest.raises(Forbidden, match="^captcha_token"):
        await captcha.check(SiteVerify(captcha_verifier.url, captcha_verifier.secret), "forged", "203.0.113.7")

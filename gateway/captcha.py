"""The optional CAPTCHA check on register and login.

Any ``siteverify``-compatible service works (hCaptcha, reCAPTCHA, Cloudflare Turnstile): a form
POST of ``secret``, ``response`` and ``remoteip`` answered with JSON ``{"success": bool, ...}``.
"""

from __future__ import annotations

import logging
from typing import Protocol

import httpx

from raychat.errors import Forbidden, Invalid, Unavailable

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0


class CaptchaVerifier(Protocol):
    async def verify(self, token: str, remote_ip: str) -> bool:
        """True only if the provider says ``token`` is a solved challenge (for ``remote_ip``).
        A refusal, an unexpected answer or an answer that is not JSON is False. Raises
        ``Unavailable`` if the provider cannot be reached or does not answer within its
        timeout: the check then fails closed."""


class SiteVerify:
    def __init__(self, url: str, secret: str, *, timeout_s: float = TIMEOUT_S):
        self.url = url
        self._secret = secret
        self._timeout_s = timeout_s

    async def verify(self, token: str, remote_ip: str) -> bool:
        form = {"secret": self._secret, "response": token, "remoteip": remote_ip}
        try:
            # A client per call: CAPTCHAs guard sign-in only, and nothing outlives the event loop.
            async with httpx.AsyncClient(timeout=self._timeout_s) as client:
                r = await client.post(self.url, data=form)
        except httpx.HTTPError as exc:
            log.warning("captcha provider unreachable: %r", exc)
            raise Unavailable("captcha check unavailable, retry later", retry_after_ms=1000) from exc
        if r.status_code >= 500:
            log.warning("captcha provider answered %d", r.status_code)
            raise Unavailable("captcha check unavailable, retry later", retry_after_ms=1000)
        try:
            answer = r.json()
        except ValueError:
            return False
        return isinstance(answer, dict) and answer.get("success") is True


def require_token(verifier: CaptchaVerifier | None, token: str | None) -> None:
    """With CAPTCHA on, a sign-in body without ``captcha_token`` is invalid (422)."""
    if verifier is not None and not token:
        raise Invalid("captcha_token: required (solve the CAPTCHA first)")


async def check(verifier: CaptchaVerifier | None, token: str | None, ip: str) -> None:
    """With CAPTCHA on, a token the provider does not accept is forbidden (403)."""
    if verifier is None:
        return
    require_token(verifier, token)
    if not await verifier.verify(token, ip):
        log.warning("refused sign-in from ip %s: CAPTCHA check failed", ip)
        raise Forbidden("captcha_token: the CAPTCHA check failed")

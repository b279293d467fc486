"""Which abuse limits apply and how each is keyed: the policy over the RateLimiter port.

    rule           key (in the limiter)        size (settings)                                   store down
    login_ip       login:ip:<client ip>        login_attempts_per_ip per login_window_s          503
    login_account  login:acct:<username>       login_attempts_per_account per login_window_s     503
    register_ip    register:ip:<client ip>     registrations_per_ip per registration_window_s    503
    message        msg:<user_id>               message_burst, then messages_per_s                allowed
    typing         typing:<user_id>            typing_burst, then typing_per_s                   allowed
    search         search:<user_id>            search_burst, then searches_per_s                 allowed
    sockets        ws:<user_id> (semaphore)    ws_connections_per_user, leases of LEASE_S        allowed

Every rule is a token bucket: "N per window" holds N tokens and refills one every window/N
seconds. A client IP is an IPv4 address or, for IPv6, its /64 (one host commonly owns a whole
/64). Login is keyed by the normalized username, never by a user id: an unknown user is limited
exactly like a known one, and no lookup happens before the limit. When the limiter's store is
down, sign-in refuses (an attacker must not get unlimited guesses during an outage) while chat
carries on unlimited (an outage must not stop conversations); both are logged.

Every refusal is logged at WARNING with the rule and the user id, username or IP, and never a
token, password or body.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from raychat.clock import Clock
from raychat.config import Settings
from raychat.errors import Invalid, RateLimited, Unavailable
from storage.errors import StoreError
from storage.ports import RateLimiter

from .accounts import normalize_username

log = logging.getLogger(__name__)

LEASE_S = 60.0                  # a socket slot of a crashed replica frees itself after this
RENEW_EVERY_S = LEASE_S / 3     # two renewals may fail before a live socket's slot lapses
_OUTAGE_LOG_EVERY_S = 10.0      # one "limiter unavailable" line per this, not one per message


@dataclass(frozen=True)
class Rule:
    name: str
    burst: int
    per_s: float
    fail_open: bool
    message: str

    @classmethod
    def per_window(cls, name: str, n: int, window_s: float, *, fail_open: bool, message: str) -> "Rule":
        return cls(name, n, n / window_s, fail_open, message)


@dataclass(frozen=True)
class SocketSlot:
    key: str
    holder: str
    held: bool          # False when the store was down at open: nothing to renew or release


# One message for both login rules: the answer must not say whether the account or the IP tripped.
_LOGIN_REFUSED = "too many login attempts; retry later"


class Limits:
    def __init__(self, port: RateLimiter, settings: Settings, clock: Clock):
        s = settings
        self.port = port
        self.clock = clock
        self.login_ip = Rule.per_window("login_ip", s.login_attempts_per_ip, s.login_window_s,
                                        fail_open=False, message=_LOGIN_REFUSED)
        self.login_account = Rule.per_window("login_account", s.login_attempts_per_account, s.login_window_s,
                                             fail_open=False, message=_LOGIN_REFUSED)
        self.register_ip = Rule.per_window("register_ip", s.registrations_per_ip, s.registration_window_s,
                                           fail_open=False, message="too many registrations; retry later")
        self.message_rule = Rule("message", s.message_burst, s.messages_per_s, True,
                                 "sending too fast; retry later")
        self.typing_rule = Rule("typing", s.typing_burst, s.typing_per_s, True, "typing frames too fast")
        self.search_rule = Rule("search", s.search_burst, s.searches_per_s, True, "searching too fast; retry later")
        self.sockets_per_user = s.ws_connections_per_user
        self._held: set[tuple[str, str]] = set()
        self._renewer: asyncio.Task | None = None
        self._outage_logged_at: float | None = None

    # ---- sign-in ------------------------------------------------------------------------
    @asynccontextmanager
    async def login_attempt(self, ip: str, username: object) -> AsyncIterator[None]:
        """Charge one attempt to the client IP and to the account before the password is
        checked (so a refused attempt costs no hash); give both back if the block succeeds,
        so only failed attempts count. Raises RateLimited (429) or Unavailable (503)."""
        charged = [(self.login_ip, "login:ip:" + ip_key(ip), f"ip {ip}")]
        try:
            name = normalize_username(username)
        except Invalid:
            name = None          # no account can have this name: only the IP pays
        if name is not None:
            charged.append((self.login_account, "login:acct:" + name, f"account {name!r} from ip {ip}"))
        for rule, key, who in charged:
            await self._take(rule, key, who)
        yield
        for rule, key, who in charged:
            try:
                await self.port.give_back(key, rule.burst, rule.per_s)
            except StoreError as exc:   # the login stands; the attempt just stays counted
                log.info("could not give back a %s token for %s: %r", rule.name, who, exc)

    async def registration(self, ip: str) -> None:
        """Charge one registration attempt to the client IP (whatever its outcome)."""
        await self._take(self.register_ip, "register:ip:" + ip_key(ip), f"ip {ip}")

    # ---- chat ---------------------------------------------------------------------------
    async def message(self, user_id: str, ref: str | None = None) -> None:
        """One message (WebSocket or HTTP) from ``user_id``; RateLimited carries ``ref``."""
        await self._take(self.message_rule, "msg:" + user_id, f"user {user_id}", ref=ref)

    async def typing(self, user_id: str) -> None:
        """One typing frame from ``user_id``."""
        await self._take(self.typing_rule, "typing:" + user_id, f"user {user_id}")

    async def search(self, user_id: str) -> None:
        """One search (any page) by ``user_id``."""
        await self._take(self.search_rule, "search:" + user_id, f"user {user_id}")

    # ---- sockets ------------------------------------------------------------------------
    async def open_socket(self, user_id: str) -> SocketSlot:
        """A slot for one more WebSocket of ``user_id``, or RateLimited. Release it with
        ``close_socket``; while open, ``renew_sockets`` (run by ``start``) keeps it."""
        key, holder = "ws:" + user_id, uuid.uuid4().hex
        try:
            verdict = await self.port.hold(key, holder, self.sockets_per_user, LEASE_S)
        except StoreError as exc:
            self._log_outage("sockets", f"user {user_id}", exc)
            return SocketSlot(key, holder, held=False)
        if not verdict.allowed:
            log.warning("rate limited: sockets for user %s (%d open), retry in %d ms",
                        user_id, self.sockets_per_user, verdict.retry_after_ms)
            raise RateLimited(f"at most {self.sockets_per_user} connections per user",
                              retry_after_ms=verdict.retry_after_ms)
        self._held.add((key, holder))
        return SocketSlot(key, holder, held=True)

    async def close_socket(self, slot: SocketSlot) -> None:
        """Free the slot now; never raises (an unreleased slot lapses after LEASE_S)."""
        if not slot.held:
            return
        self._held.discard((slot.key, slot.holder))
        try:
            await self.port.release(slot.key, slot.holder)
        except StoreError as exc:
            log.info("socket slot %s not released, it lapses in %.0f s: %r", slot.key, LEASE_S, exc)

    async def renew_sockets(self) -> None:
        """Extend the lease of every slot this replica holds, in one call; never raises."""
        try:
            await self.port.renew(list(self._held), LEASE_S)
        except StoreError as exc:
            log.warning("socket slots not renewed (%d held): %r", len(self._held), exc)

    def start(self) -> None:
        """Renew this replica's socket slots every RENEW_EVERY_S, from now on. Idempotent."""
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            await self.renew_sockets()

    # ---- the one way a bucket is charged --------------------------------------------------
    async def _take(self, rule: Rule, key: str, who: str, ref: str | None = None) -> None:
        try:
            verdict = await self.port.take(key, rule.burst, rule.per_s)
        except StoreError as exc:
            if rule.fail_open:
                self._log_outage(rule.name, who, exc)
                return
            log.warning("refused %s for %s: rate limiter unavailable: %r", rule.name, who, exc)
            raise Unavailable("rate limiter unavailable, retry later", retry_after_ms=1000) from exc
        if not verdict.allowed:
            log.warning("rate limited: %s for %s, retry in %d ms", rule.name, who, verdict.retry_after_ms)
            raise RateLimited(rule.message, retry_after_ms=verdict.retry_after_ms, ref=ref)

    def _log_outage(self, rule: str, who: str, exc: Exception) -> None:
        now = self.clock.monotonic()
        if self._outage_logged_at is None or now - self._outage_logged_at >= _OUTAGE_LOG_EVERY_S:
            self._outage_logged_at = now
            log.warning("rate limiter unavailable; allowing %s for %s (and others, for a while): %r",
                        rule, who, exc)


def ip_key(ip: str) -> str:
    """The part of an address a limit counts: an IPv4 address, or the /64 of an IPv6 one."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 6:
        return str(ipaddress.ip_network(f"{addr}/64", strict=False))
    return str(addr)

"""The abuse-limit policy (gateway/limits.py) on the in-process limiter and a fake clock."""

from __future__ import annotations

import logging

import pytest

from gateway.limits import LEASE_S, Limits, ip_key
from raychat.clock import FakeClock
from raychat.config import Settings
from raychat.errors import RateLimited, Unavailable, Unauthorized
from tests.storage.memory_limits import MemoryLimits

IP, OTHER_IP = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def port(clock) -> MemoryLimits:
    return MemoryLimits(clock.now)


@pytest.fixture
def limits(port, clock) -> Limits:
    return Limits(port, Settings(), clock)


async def fail_login(limits: Limits, ip: str, username: str) -> None:
    """One attempt whose password is wrong (the block raises, as AccountService.login does)."""
    with pytest.raises(Unauthorized):
        async with limits.login_attempt(ip, username):
            raise Unauthorized("wrong username or password")


async def refused_login(limits: Limits, ip: str, username: str) -> RateLimited:
    ran = False
    with pytest.raises(RateLimited) as info:
        async with limits.login_attempt(ip, username):
            ran = True
    assert not ran, "a refused attempt must not reach the password check"
    return info.value


# ---- login ----------------------------------------------------------------------------------
async def test_the_eleventh_wrong_password_for_an_account_is_refused(limits):
    for _ in range(10):
        await fail_login(limits, IP, "alice")
    err = await refused_login(limits, OTHER_IP, "alice")
    assert err.retry_after_ms == 90_000         # 10 per 15 min: the next token in 90 s


async def test_the_account_limit_lifts_as_the_bucket_refills(limits, clock):
    for _ in range(10):
        await fail_login(limits, IP, "alice")
    clock.advance(90)
    await fail_login(limits, IP, "alice")


async def test_successful_logins_are_not_counted(limits):
    for _ in range(30):
        async with limits.login_attempt(IP, "alice"):
            pass
    await fail_login(limits, IP, "alice")


async def test_the_account_is_keyed_by_its_normalized_username(limits):
    for _ in range(10):
        await fail_login(limits, IP, "Alice")
    await refused_login(limits, OTHER_IP, "ＡＬＩＣＥ")


async def test_spraying_one_ip_over_many_accounts_is_refused_after_the_ip_limit(limits):
    for n in range(100):
        await fail_login(limits, IP, f"user{n}")
    await refused_login(limits, IP, "user100")


async def test_the_ip_limit_leaves_other_ips_alone(limits):
    for n in range(100):
        await fail_login(limits, IP, f"user{n}")
    await fail_login(limits, OTHER_IP, "user100")


async def test_account_and_ip_refusals_read_the_same(limits):
    """The answer must not tell an attacker which limit they hit (or whether the account exists)."""
    for _ in range(10):
        await fail_login(limits, IP, "alice")
    by_account = await refused_login(limits, OTHER_IP, "alice")
    for n in range(100 - 10):
        await fail_login(limits, IP, f"user{n}")
    by_ip = await refused_login(limits, IP, "nobody")
    assert by_account.message == by_ip.message


async def test_a_username_no_account_can_have_charges_only_the_ip(limits, port):
    await fail_login(limits, IP, "no such name!")
    assert [key for method, key in port.calls] == ["login:ip:" + IP]


async def test_ipv6_clients_are_counted_by_their_64(limits):
    for n in range(100):
        await fail_login(limits, f"2001:db8:1:2::{n:x}", f"user{n}")
    await refused_login(limits, "2001:db8:1:2:ffff::1", "user100")
    await fail_login(limits, "2001:db8:1:3::1", "user100")


async def test_login_refuses_when_the_limiter_is_down(limits, port):
    port.down = True
    with pytest.raises(Unavailable):
        async with limits.login_attempt(IP, "alice"):
            pass


# ---- registration -----------------------------------------------------------------------------
async def test_registrations_per_ip_are_limited(limits):
    for _ in range(20):
        await limits.registration(IP)
    with pytest.raises(RateLimited) as info:
        await limits.registration(IP)
    assert info.value.retry_after_ms == 180_000     # 20 per hour
    await limits.registration(OTHER_IP)


# ---- messages and typing ------------------------------------------------------------------------
async def test_messages_have_a_burst_then_a_steady_rate(limits, clock):
    for _ in range(30):
        await limits.message("u1")
    with pytest.raises(RateLimited) as info:
        await limits.message("u1", ref="k-31")
    assert info.value.ref == "k-31" and info.value.retry_after_ms == 200   # 5 per second
    clock.advance(0.2)
    await limits.message("u1")


async def test_each_user_has_their_own_message_bucket(limits):
    for _ in range(30):
        await limits.message("u1")
    await limits.message("u2")


async def test_typing_frames_have_their_own_bucket(limits):
    for _ in range(10):
        await limits.typing("u1")
    with pytest.raises(RateLimited):
        await limits.typing("u1")
    await limits.message("u1")


async def test_searches_have_their_own_bucket_a_burst_then_a_steady_rate(limits, clock):
    for _ in range(20):
        await limits.search("u1")
    with pytest.raises(RateLimited) as info:
        await limits.search("u1")
    assert info.value.retry_after_ms == 500 and info.value.code == "rate_limited"    # 2 per second
    await limits.search("u2")                  # per user
    await limits.message("u1")                 # and apart from sending
    clock.advance(0.5)
    await limits.search("u1")


async def test_search_goes_on_when_the_limiter_is_down(limits, port):
    port.down = True
    for _ in range(50):
        await limits.search("u1")


async def test_messages_flow_when_the_limiter_is_down_with_one_warning(limits, port, caplog):
    port.down = True
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        for _ in range(100):
            await limits.message("u1")
    assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


# ---- sockets --------------------------------------------------------------------------------------
async def test_the_socket_over_the_per_user_limit_is_refused(limits):
    for _ in range(20):
        await limits.open_socket("u1")
    with pytest.raises(RateLimited):
        await limits.open_socket("u1")
    await limits.open_socket("u2")


async def test_closing_a_socket_frees_its_slot(limits):
    slots = [await limits.open_socket("u1") for _ in range(20)]
    await limits.close_socket(slots[0])
    await limits.open_socket("u1")


async def test_renewal_keeps_open_sockets_counted_past_the_lease(limits, clock):
    for _ in range(20):
        await limits.open_socket("u1")
    for _ in range(4):
        clock.advance(LEASE_S / 2)
        await limits.renew_sockets()
    with pytest.raises(RateLimited):
        await limits.open_socket("u1")


async def test_slots_of_a_crashed_replica_lapse_after_the_lease(port, clock):
    crashed = Limits(port, Settings(), clock)
    for _ in range(20):
        await crashed.open_socket("u1")
    clock.advance(LEASE_S)
    await Limits(port, Settings(), clock).open_socket("u1")


async def test_sockets_open_when_the_limiter_is_down(limits, port):
    port.down = True
    slot = await limits.open_socket("u1")
    await limits.close_socket(slot)
    await limits.renew_sockets()


# ---- logs -------------------------------------------------------------------------------------------
async def test_a_refusal_is_logged_with_who_and_which_rule(limits, caplog):
    for _ in range(30):
        await limits.message("u_42")
    with caplog.at_level(logging.WARNING, logger="gateway.limits"):
        with pytest.raises(RateLimited):
            await limits.message("u_42", ref="secret-ish-ref")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "message" in record.getMessage() and "u_42" in record.getMessage()


async def test_a_refused_login_is_logged_without_the_password(limits, caplog):
    password = "hunter2-correct-horse"
    for _ in range(10):
        with pytest.raises(Unauthorized):
            async with limits.login_attempt(IP, "alice"):
                raise Unauthorized(password)
    with caplog.at_level(logging.INFO):
        await refused_login(limits, IP, "alice")
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "alice" in text and IP in text and password not in text


# ---- keys -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ip,key", [("203.0.113.7", "203.0.113.7"),
                                    ("2001:db8::1", "2001:db8::/64"),
                                    ("2001:db8:0:0:ffff::9", "2001:db8::/64"),
                                    ("unknown", "unknown")])
def test_ip_key(ip, key):
    assert ip_key(ip) == key

"""Who is calling (client_ip) and from which page (origin_allowed): gateway/edge.py."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from gateway.edge import client_ip, origin_allowed
from raychat import ingress

PROXIES = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32"))


def scope(peer: str | None, *forwarded: str) -> dict:
    return {"client": (peer, 51000) if peer else None,
            "headers": [(b"x-forwarded-for", f.encode()) for f in forwarded]}


# ---- client_ip -------------------------------------------------------------------------------
def test_without_trusted_proxies_the_peer_is_the_client_and_the_header_is_ignored():
    assert client_ip(scope("203.0.113.7", "1.2.3.4"), ()) == "203.0.113.7"


def test_an_untrusted_peer_cannot_forward_for_someone_else():
    assert client_ip(scope("203.0.113.7", "1.2.3.4"), PROXIES) == "203.0.113.7"


def test_a_trusted_proxy_names_the_client():
    assert client_ip(scope("10.1.2.3", "198.51.100.9"), PROXIES) == "198.51.100.9"


def test_the_client_is_the_first_untrusted_hop_from_the_right():
    """A client may put anything on the left of the header; only what our proxies added counts."""
    assert client_ip(scope("10.0.0.1", "6.6.6.6, 198.51.100.9, 10.0.0.2"), PROXIES) == "198.51.100.9"


def test_several_header_lines_are_one_list():
    assert client_ip(scope("10.0.0.1", "6.6.6.6", "198.51.100.9"), PROXIES) == "198.51.100.9"


def test_a_trusted_proxy_without_the_header_is_the_client():
    assert client_ip(scope("127.0.0.1"), PROXIES) == "127.0.0.1"


def test_a_garbage_hop_stops_the_walk_at_the_last_good_address():
    assert client_ip(scope("10.0.0.1", "not-an-ip, 10.0.0.2"), PROXIES) == "10.0.0.2"


@pytest.mark.parametrize("hop,ip", [("198.51.100.9:4431", "198.51.100.9"), ("[2001:db8::1]:443", "2001:db8::1"),
                                    ("2001:db8::1", "2001:db8::1"), ("::ffff:198.51.100.9", "198.51.100.9")])
def test_forwarded_addresses_with_ports_and_v6_forms(hop, ip):
    assert client_ip(scope("10.0.0.1", hop), PROXIES) == ip


def test_no_peer_is_unknown():
    assert client_ip(scope(None), PROXIES) == "unknown"


# ---- origin_allowed ----------------------------------------------------------------------------
def test_no_origin_is_a_non_browser_client_and_allowed():
    assert origin_allowed(None, "chat.example", frozenset())


@pytest.mark.parametrize("origin,host", [("https://chat.example", "chat.example"),
                                         ("http://127.0.0.1:8000", "127.0.0.1:8000"),
                                         ("https://chat.example", "chat.example:443"),
                                         ("HTTPS://Chat.Example/", "chat.example")])
def test_without_an_allowlist_the_same_host_is_allowed(origin, host):
    assert origin_allowed(origin, host, frozenset())


@pytest.mark.parametrize("origin,host", [("https://evil.example", "chat.example"),
                                         ("http://127.0.0.1:9999", "127.0.0.1:8000"),
                                         ("https://chat.example:8443", "chat.example"),
                                         ("https://chat.example.evil.example", "chat.example"),
                                         ("null", "chat.example"),
                                         ("https://chat.example", None)])
def test_without_an_allowlist_another_host_is_refused(origin, host):
    assert not origin_allowed(origin, host, frozenset())


def test_with_an_allowlist_only_listed_origins_pass():
    allowed = frozenset({"https://app.chat.example"})
    assert origin_allowed("https://app.chat.example", "api.chat.example", allowed)
    assert not origin_allowed("https://api.chat.example", "api.chat.example", allowed)


def test_a_star_allows_every_origin():
    assert origin_allowed("https://anything.example", "chat.example", frozenset({"*"}))


# ---- behind HAProxy: the peer is the front door, which appends what it saw ----------------------
FRONT = frozenset({"127.0.0.1"})


def test_behind_the_front_door_its_last_entry_is_the_peer():
    assert client_ip(scope("127.0.0.1", "203.0.113.7"), (), FRONT) == "203.0.113.7"


def test_behind_the_front_door_a_client_cannot_forge_its_address():
    assert client_ip(scope("127.0.0.1", "1.2.3.4, 203.0.113.7"), (), FRONT) == "203.0.113.7"
    assert client_ip(scope("127.0.0.1", "1.2.3.4, 127.0.0.1"), (), FRONT) == "127.0.0.1"


def test_behind_the_front_door_trusted_proxies_still_vouch_for_their_clients():
    assert client_ip(scope("127.0.0.1", "6.6.6.6, 198.51.100.9, 10.0.0.2"), PROXIES, FRONT) == "198.51.100.9"


def test_a_peer_that_is_not_the_front_door_is_read_as_before():
    assert client_ip(scope("203.0.113.7", "1.2.3.4"), (), FRONT) == "203.0.113.7"
    assert client_ip(scope("127.0.0.1"), (), FRONT) == "127.0.0.1"


# ---- behind HAProxy on several nodes: another node's HAProxy is a front door too ------------------
async def test_the_cluster_s_other_nodes_join_the_front_door(monkeypatch):
    monkeypatch.setenv("RAY_SERVE_ENABLE_HA_PROXY", "1")
    monkeypatch.setattr(ingress, "_cluster_nodes", frozenset())
    other_node = "10.1.2.3"
    forwarded = scope(other_node, "203.0.113.7")
    assert client_ip(forwarded, ()) == other_node          # before the watcher has read the nodes

    reads = iter([frozenset({other_node}), OSError("the GCS is away")])

    def read() -> frozenset[str]:
        got = next(reads)
        if isinstance(got, Exception):
            raise got
        return got

    watcher = asyncio.get_running_loop().create_task(ingress.watch_cluster_nodes(read, every_s=0.01))
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if other_node in ingress.front_door_addresses():
                break
        assert client_ip(forwarded, ()) == "203.0.113.7"
        await asyncio.sleep(0.05)                               # a failed read keeps the last list
        assert other_node in ingress.front_door_addresses() and not watcher.done()
    finally:
        watcher.cancel()


def test_behind_serve_s_proxy_no_node_is_a_front_door(monkeypatch):
    monkeypatch.delenv("RAY_SERVE_ENABLE_HA_PROXY", raising=False)
    monkeypatch.setattr(ingress, "_cluster_nodes", frozenset({"10.1.2.3"}))
    assert ingress.front_door_addresses() == frozenset()
    assert client_ip(scope("10.1.2.3", "203.0.113.7"), ()) == "10.1.2.3"

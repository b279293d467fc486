"""Device token shapes, and where webhooks may go (no calls to the server's own network)."""

from __future__ import annotations

import pytest

from push.targets import WebhookPolicy, check_token, mask

OPEN = WebhookPolicy(None)


@pytest.mark.parametrize("url", ["https://hooks.example.com/raychat", "https://8.8.8.8/x", "https://a.b.co:8443/",
                                 "https://[2606:4700::1111]/x", "https://[64:ff9b::808:808]/x"])
def test_without_an_allowlist_any_https_url_to_a_public_host_is_fine(url):
    assert OPEN.check(url) == url


@pytest.mark.parametrize("url, why", [
    ("http://hooks.example.com/x", "https"),
    ("https://127.0.0.1/x", "public host"),
    ("https://10.0.0.7/x", "public host"),
    ("https://169.254.169.254/latest/meta-data", "public host"),
    ("https://[::1]/x", "public host"),
    ("https://localhost/x", "public host"),
    ("https://db.internal/x", "public host"),
    ("https://printer/x", "public host"),
    ("https://user:pw@hooks.example.com/x", "user name"),
    ("https://hooks.example.com/x#frag", "fragment"),
    ("ftp://hooks.example.com/x", "http(s)"),
    ("https://hooks.example.com/a b", "spaces"),
    ("https://hooks.example.com:99999/x", "valid URL"),
    ("https://hooks.example.com/" + "a" * 2100, "at most"),
    # Found by a black-box client: forms of internal IPv4 addresses that ipaddress does not parse,
    # but resolvers and HTTP clients read (inet_aton), and IPv6 addresses that carry one.
    ("https://127.1/x", "public host"),
    ("https://0177.0.0.1/x", "public host"),
    ("https://0x7f.0.0.1/x", "public host"),
    ("https://127.000.000.001/x", "public host"),
    ("https://0x7f000001/x", "public host"),
    ("https://2130706433/x", "public host"),
    ("https://10.1/x", "public host"),
    ("https://192.168.1/x", "public host"),
    ("https://999.1/x", "public host"),
    ("https://224.0.0.1/x", "public host"),
    ("https://[64:ff9b::7f00:1]/x", "public host"),
    ("https://[::ffff:10.0.0.1]/x", "public host"),
    ("https://[2002:7f00:1::]/x", "public host"),
])
def test_without_an_allowlist_internal_or_odd_urls_are_refused(url, why):
    with pytest.raises(ValueError, match=why.replace("(", r"\(").replace(")", r"\)")):
        OPEN.check(url)


def test_an_allowlist_of_url_prefixes_matches_scheme_host_port_and_path():
    policy = WebhookPolicy("http://127.0.0.1, https://hooks.example.com:8443/raychat/")
    assert policy.check("http://127.0.0.1:5000/hook")
    assert policy.check("https://hooks.example.com:8443/raychat/u1")
    for url in ("https://127.0.0.1:5000/hook",                 # another scheme
                "http://127.0.0.2/hook",                       # another host
                "http://127.0.0.1.evil.example/hook",          # a prefix of the host is not the host
                "https://hooks.example.com/raychat/u1",        # another port
                "https://hooks.example.com:8443/raychatevil",  # a prefix of the path is not the path
                "https://hooks.example.com:8443/other"):
        with pytest.raises(ValueError, match="does not send webhooks"):
            policy.check(url)


def test_an_allowlisted_host_name_allows_https_to_it_only():
    policy = WebhookPolicy("hooks.example.com")
    assert policy.check("https://hooks.example.com/any/path")
    with pytest.raises(ValueError):
        policy.check("http://hooks.example.com/x")
    with pytest.raises(ValueError):
        policy.check("https://evil.example.com/x")


def test_token_shapes():
    assert check_token("fcm", "fJ3k:APA91b-x_y.z" * 5, OPEN)
    assert check_token("apns", "AB" * 32, OPEN) == "ab" * 32
    for platform, token in (("fcm", "short"), ("fcm", "has space" * 4), ("apns", "zz" * 32), ("apns", "ab" * 31),
                            ("webhook", "not a url"), ("sms", "x" * 40)):
        with pytest.raises(ValueError):
            check_token(platform, token, OPEN)


def test_masks_never_show_the_token():
    token = "fJ3kAPA91b" * 16
    assert mask("fcm", token) == "…" + token[-6:]
    assert mask("webhook", "https://hooks.example.com:8443/secret/path?k=v") == "https://hooks.example.com:8443/…"

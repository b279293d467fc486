"""gateway/replica_server.py: uvicorn servers made after ``configure`` negotiate deflate as set and
run their app inside OneRequestId. Through the real stack: tests/e2e/test_ingress.py."""

from __future__ import annotations

import pytest
import uvicorn.config

from gateway import replica_server
from gateway.request_ids import OneRequestId


async def app(scope, receive, send):
    pass


@pytest.fixture(autouse=True)
def restore_uvicorn(monkeypatch):
    monkeypatch.setattr(uvicorn.config.Config, "__init__", uvicorn.config.Config.__init__)   # undone after
    monkeypatch.setattr(uvicorn.config.Config, "load", uvicorn.config.Config.load)


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

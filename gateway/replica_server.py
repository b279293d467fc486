"""What raychat changes in the uvicorn server Serve builds for this replica.

Serve builds and starts each replica's server itself (ray/serve/_private/http_util.py), after our
constructor has run, and takes no options for it; so the constructor patches uvicorn's Config in
this process, before that server exists. Through Serve's own proxy (``RAYCHAT_INGRESS=proxy``,
or TLS) requests are served by the proxy actor's server: ``proxy_middlewares`` applies the same
patch there (Serve calls it in that actor, by the import path raychat/ingress.py puts in the
environment of the Ray processes).

WebSocket compression (``ws_compression``): off by default, as in socket.io (its
``perMessageDeflate`` is off since 3.0) and Centrifugo:
- chat frames are small, so deflate saves few bytes per frame;
- it costs CPU on every frame for every socket: a group message is written once per member,
  and each socket's compressor has its own context, so nothing is shared. Measured with
  ``bench.load``, group1000 at 8,000 deliveries/s: 48 µs of gateway CPU per frame with deflate,
  27 µs without;
- each socket holds a compressor and a decompressor, tens of KB of memory whether it talks or not.
Serve passes no WebSocket options, so uvicorn's own default (deflate on) would apply: the patch
sets the default instead, a keyword Serve does not pass; an explicit one still wins.

Request ids: Serve wraps the app it gives uvicorn in its RequestIdMiddleware, which appends the
request's ``x-request-id`` to every response as the client sent it, so each answer carried it
twice (with ours) and an unsafe one came back verbatim. The patch wraps that app in
gateway/request_ids.py's ``OneRequestId``.
"""

from __future__ import annotations

import functools
import os

import uvicorn.config

from raychat.ingress import PROXY_WS_COMPRESSION

from .request_ids import OneRequestId

_ORIGINAL_INIT = uvicorn.config.Config.__init__
_ORIGINAL_LOAD = uvicorn.config.Config.load


def configure(*, ws_compression: bool) -> None:
    """Make uvicorn servers created from now on in this process negotiate deflate or not, and
    answer with one sane ``X-Request-ID``."""
    @functools.wraps(_ORIGINAL_INIT)
    def init(self, *args, **kwargs):
        kwargs.setdefault("ws_per_message_deflate", ws_compression)
        _ORIGINAL_INIT(self, *args, **kwargs)

    @functools.wraps(_ORIGINAL_LOAD)
    def load(self):
        _ORIGINAL_LOAD(self)        # the app as uvicorn runs it, whether given as an app or a factory
        self.loaded_app = OneRequestId(self.loaded_app)

    uvicorn.config.Config.__init__ = init
    uvicorn.config.Config.load = load
    global _configured
    _configured = True


_configured = False


def proxy_middlewares() -> list:
    """Serve's RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH: Serve calls it in its proxy actor (the
    front door with ``RAYCHAT_INGRESS=proxy`` or TLS, and HAProxy's fallback) before that actor
    builds its uvicorn server, so the same patch reaches the proxy's server too: deflate as
    ``ws_compression`` says, one sane X-Request-ID. Serve also calls it in each gateway replica
    behind HAProxy, whose constructor configured its server already (from its own settings): there
    it does nothing. It adds no middleware (the patch wraps the app outside Serve's own)."""
    if not _configured:
        configure(ws_compression=os.environ.get(PROXY_WS_COMPRESSION) == "1")
    return []

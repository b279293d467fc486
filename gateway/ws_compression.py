"""Whether this replica's WebSocket handshakes accept permessage-deflate (``ws_compression``).

Off by default, as in socket.io (its ``perMessageDeflate`` is off since 3.0) and Centrifugo:
- chat frames are small, so deflate saves few bytes per frame;
- it costs CPU on every frame for every socket: a group message is written once per member,
  and each socket's compressor has its own context, so nothing is shared. Measured with
  ``bench.load``, group1000 at 8,000 deliveries/s: 48 µs of gateway CPU per frame with deflate,
  27 µs without;
- each socket holds a compressor and a decompressor, tens of KB of memory whether it talks or not.

Serve builds each replica's uvicorn server itself (ray/serve/_private/http_util.py) and passes
no WebSocket options, so uvicorn's own default (deflate on) would apply. The replica runs our
constructor before it starts that server, so the constructor sets the default here: a keyword
Serve does not pass. An explicit ``ws_per_message_deflate`` still wins. Through Serve's own
proxy (``RAYCHAT_INGRESS=proxy``) the handshake happens in the proxy actor, which this cannot
reach: there Serve's default applies.
"""

from __future__ import annotations

import functools

import uvicorn.config

_ORIGINAL_INIT = uvicorn.config.Config.__init__


def set_ws_compression(enabled: bool) -> None:
    """Make uvicorn servers created from now on in this process negotiate deflate or not."""
    @functools.wraps(_ORIGINAL_INIT)
    def init(self, *args, **kwargs):
        kwargs.setdefault("ws_per_message_deflate", enabled)
        _ORIGINAL_INIT(self, *args, **kwargs)

    uvicorn.config.Config.__init__ = init

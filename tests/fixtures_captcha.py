"""A local CAPTCHA ``siteverify`` server, as hCaptcha and reCAPTCHA run it, for one test session.

It answers a form POST of ``secret``, ``response`` and ``remoteip`` with ``{"success": bool}``:
success only for its secret and its well-known test token ``PASS_TOKEN`` (as hCaptcha's test
keys always pass). Every request it got is in ``requests``, so tests can check what was sent.

Registered from tests/conftest.py as a pytest plugin.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import parse_qs

import pytest

SECRET = "0x" + "0" * 40
PASS_TOKEN = "10000000-aaaa-bbbb-cccc-000000000001"     # hCaptcha's always-passing test response


@dataclass
class Verifier:
    url: str
    secret: str = SECRET
    pass_token: str = PASS_TOKEN
    requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture(scope="session")
def captcha_verifier() -> Iterator[Verifier]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            seen.append(form)
            if self.path == "/broken":          # a provider having a bad day: not JSON
                return self._answer(200, b"<html>oops</html>", "text/html")
            ok = form.get("secret") == SECRET and form.get("response") == PASS_TOKEN
            body = {"success": ok} if ok else {"success": False, "error-codes": ["invalid-input-response"]}
            self._answer(200, json.dumps(body).encode(), "application/json")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):      # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="captcha-verifier", daemon=True)
    thread.start()
    yield Verifier(f"http://127.0.0.1:{server.server_address[1]}/siteverify", requests=seen)
    server.shutdown()
    server.server_close()
    thread.join(5)

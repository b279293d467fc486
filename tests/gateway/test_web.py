"""The web client's files as the gateway serves them: types, security headers, no way out of the
static folder, nothing fetched from another site, and no HTML built from strings.

In-process, on a tiny app with gateway.web installed and real Settings; the browser tests
(tests/e2e/test_web.py) drive the client itself.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from gateway import http_errors, web
from gateway.app import create_app
from raychat.config import Settings

ROOT = Path(__file__).resolve().parents[2]
STATIC = web.STATIC_DIR
SCRIPTS = sorted(STATIC.rglob("*.js"))


def app_with(settings: Settings) -> TestClient:
    app = FastAPI()
    http_errors.install(app)
    web.install(app, lambda: settings)
    return TestClient(app)


@pytest.fixture
def client():
    with app_with(Settings()) as c:
        yield c


def csp(response) -> dict[str, list[str]]:
    out = {}
    for directive in response.headers["content-security-policy"].split(";"):
        name, *sources = directive.split()
        out[name] = sources
    return out


def test_the_page_is_served_at_the_root_with_its_security_headers(client):
    r = client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script type="module" src="static/js/app.js">' in r.text
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-cache"
    policy = csp(r)
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]          # no inline script, no eval
    assert policy["style-src"] == ["'self'"]
    assert policy["img-src"] == ["'self'", "blob:", "data:"]
    assert policy["connect-src"] == ["'self'", "ws://testserver", "wss://testserver"]
    assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"]


def test_head_of_the_page_answers_without_a_body(client):
    r = client.head("/")
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize("path, content_type", [
    ("/static/js/app.js", "text/javascript; charset=utf-8"),
    ("/static/js/ui/chat.js", "text/javascript; charset=utf-8"),
    ("/static/style.css", "text/css; charset=utf-8"),
])
def test_files_have_their_type_and_the_headers(client, path, content_type):
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["cache-control"] == "no-cache"
    assert csp(r)["default-src"] == ["'self'"]


def test_an_unchanged_file_is_revalidated_with_a_304(client):
    first = client.get("/static/style.css")
    again = client.get("/static/style.css", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../web.py", "/static/%2e%2e/web.py",
                                  "/static/..%2fweb.py", "/static/js/../../web.py"])
def test_unknown_files_and_paths_out_of_the_folder_are_not_found(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


def test_media_storage_origins_join_img_and_connect_sources():
    settings = Settings(s3_endpoint="minio.internal:9000", s3_secure=False,
                        s3_access_key="k", s3_secret_key="s" * 20, public_url="https://chat.example")
    with app_with(settings) as c:
        policy = csp(c.get("/"))
    for name in ("img-src", "connect-src"):
        assert "http://minio.internal:9000" in policy[name]
        assert "https://chat.example" in policy[name]
    assert policy["script-src"] == ["'self'"]


def test_a_public_s3_url_replaces_the_internal_endpoint():
    settings = Settings(s3_endpoint="minio.internal:9000", s3_access_key="k", s3_secret_key="s" * 20,
                        s3_public_url="https://media.example.com")
    with app_with(settings) as c:
        policy = csp(c.get("/"))
    assert "https://media.example.com" in policy["img-src"]
    assert not any("minio.internal" in s for s in policy["img-src"] + policy["connect-src"])


def test_a_host_header_that_is_not_a_host_stays_out_of_the_policy(client):
    r = client.get("/", headers={"host": "evil.example; script-src *"})
    policy = csp(r)
    assert policy["script-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]


def test_the_page_routes_are_not_in_the_openapi_document():
    paths = create_app().openapi()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/static") for p in paths)


# ---- the files themselves ---------------------------------------------------------------------

IMPORT = re.compile(r"""^\s*import\s[^"']*["']([^"']+)["']""", re.M)


def test_every_module_import_resolves_to_a_served_file(client):
    """From app.js down, each relative import is a file the gateway serves as JavaScript."""
    todo, seen = ["js/app.js"], set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        r = client.get("/static/" + rel)
        assert r.status_code == 200, rel
        assert r.headers["content-type"].startswith("text/javascript"), rel
        for target in IMPORT.findall(r.text):
            assert target.startswith("./") or target.startswith("../"), f"{rel}: bare import {target}"
            todo.append(str((Path(rel).parent / target)).replace("\\", "/").replace("js/ui/../", "js/"))
    assert seen == {str(p.relative_to(STATIC)) for p in SCRIPTS}, "a module nothing imports, or one missing"


def test_nothing_is_loaded_from_another_site():
    for path in STATIC.rglob("*"):
        if path.is_file():
            text = path.read_text()
            # An absolute URL, or a scheme-relative one ("//cdn.example/x.js") in a string or url().
            assert not re.search(r"""https?://|["'(]//[a-z0-9]""", text, re.I), path


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(STATIC)))
def test_no_markup_is_built_from_strings(script):
    """User text reaches the page as text nodes only (an XSS guard the CSP backs up)."""
    text = script.read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in text, f"{script.name} uses {sink}"


def test_the_files_ship_in_the_package():
    """`pip install raychat` (not only -e) must carry gateway/static: package-data names them."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["gateway"]
    files = {str(p.relative_to(STATIC.parent)) for p in STATIC.rglob("*") if p.is_file()}
    covered = {f for f in files if any(Path(f).match(glob) for glob in data)}
    assert covered == files

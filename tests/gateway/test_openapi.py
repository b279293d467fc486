"""The OpenAPI document describes every HTTP route, so a new route cannot skip it.

In-process: the app is built with create_app() and read with app.openapi(); no server, no stores.
The wire builders are checked against the response models too, so a field added to a wire dict
without its model fails here rather than as a 500 in the end-to-end tests.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from fastapi.routing import APIRoute

from actors.events import event_to_wire
from gateway.app import create_app
from gateway.chat_service import ChatService
from gateway.routes import responses
from raychat import errors as chat_errors

ERROR_REF = "#/components/schemas/Error"


@pytest.fixture(scope="module")
def app():
    return create_app()


@pytest.fixture(scope="module")
def spec(app):
    return app.openapi()


def api_routes(routes):
    """Every APIRoute, also inside included routers (FastAPI >= 0.16x keeps them nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)
        elif hasattr(route, "routes"):
            yield from api_routes(route.routes)


def operations(app, spec):
    """(route, method, operation) for every HTTP route the app serves."""
    out = []
    for route in api_routes(app.routes):
        assert route.include_in_schema, f"{route.path} is hidden from /openapi.json"
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            op = spec["paths"].get(route.path_format, {}).get(method.lower())
            assert op is not None, f"{method} {route.path} missing from /openapi.json"
            out.append((route, method, op))
    return out


def resolve(spec, schema):
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def walk(spec, schema, seen=None):
    """Every schema object reachable from ``schema`` (through $ref, properties, items, anyOf...)."""
    seen = set() if seen is None else seen
    if isinstance(schema, dict) and "$ref" in schema:
        if schema["$ref"] in seen:
            return
        seen.add(schema["$ref"])
        schema = resolve(spec, schema)
    if not isinstance(schema, dict):
        return
    yield schema
    for key in ("properties", "$defs"):
        for sub in schema.get(key, {}).values():
            yield from walk(spec, sub, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from walk(spec, schema[key], seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, ()):
            yield from walk(spec, sub, seen)


def test_the_app_has_routes_to_check(app, spec):
    assert len(operations(app, spec)) >= 13
    assert spec["paths"], "no paths at all"


def test_every_route_documents_its_success_body(app, spec):
    for route, method, op in operations(app, spec):
        status = str(route.status_code or 200)
        assert status in op["responses"], f"{method} {route.path}: no {status} response documented"
        content = op["responses"][status].get("content")
        if status == "204":
            assert not content, f"{method} {route.path}: a 204 has no body"
            continue
        assert content, f"{method} {route.path}: {status} has no content"
        for media, body in content.items():
            schema = body.get("schema")
            # FastAPI writes {} when a route has no response_model: that documents nothing.
            assert schema, f"{method} {route.path}: {status} {media} has no schema (set response_model=)"


def test_every_route_documents_its_errors_with_the_error_body(app, spec):
    for route, method, op in operations(app, spec):
        failures = {code: r for code, r in op["responses"].items() if code[0] in "45"}
        assert "500" in failures, f"{method} {route.path}: not registered through routes.include_all"
        for code, r in failures.items():
            schema = r.get("content", {}).get("application/json", {}).get("schema")
            assert schema == {"$ref": ERROR_REF}, \
                f"{method} {route.path}: {code} is not documented with the Error body (use responses.errors)"


def test_failures_follow_from_what_a_route_takes(app, spec):
    """Authenticated routes can answer 401; routes with input 422; routes with a body 413."""
    for route, method, op in operations(app, spec):
        documented = set(op["responses"])
        where = f"{method} {route.path}"
        if op.get("security"):
            assert {"401", "503"} <= documented, f"{where}: authenticated, so 401 and 503 (responses.AUTHED)"
        if op.get("parameters") or op.get("requestBody"):
            assert "422" in documented, f"{where}: takes input, so 422"
        if op.get("requestBody"):
            assert "413" in documented, f"{where}: takes a body, so 413 (responses.WITH_BODY)"


def test_routes_that_need_a_token_declare_the_bearer_scheme(app, spec):
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": "an access_token from POST /v1/auth/login"}
    public = {"/healthz", "/readyz", "/metrics", "/v1/auth/register", "/v1/auth/login",
              "/v1/auth/refresh", "/v1/auth/logout", "/v1/auth/oidc",   # a refresh or ID token is the credential
              "/v1/blobs", "/v1/blobs/{key:path}"}   # disk-mode media: a signed form or URL is the credential
    for route, method, op in operations(app, spec):
        if route.path in public:
            continue
        assert op.get("security") == [{"bearer": []}], f"{method} {route.path} does not declare the bearer scheme"
        names = {p["name"].lower() for p in op.get("parameters", ())}
        assert "authorization" not in names, f"{method} {route.path}: the token is a scheme, not a parameter"


def test_success_bodies_declare_every_field(app, spec):
    """Object schemas say additionalProperties: false (models derive from responses.Wire), so a
    response with a field nobody documented fails the schemathesis run."""
    for route, method, op in operations(app, spec):
        status = str(route.status_code or 200)
        for body in (op["responses"][status].get("content") or {}).values():
            for schema in walk(spec, body.get("schema", {})):
                if "properties" in schema:
                    assert schema.get("additionalProperties") is False, \
                        f"{method} {route.path}: {schema.get('title')} allows undeclared fields (derive it from Wire)"


def test_the_error_schema_lists_every_wire_code():
    schema = responses.Error.model_json_schema()
    assert set(schema["properties"]["code"]["enum"]) == {cls.code for cls in chat_errors.ChatError.__subclasses__()}
    assert set(schema["required"]) == {"code", "message"}


@pytest.mark.parametrize("exc", [chat_errors.Invalid("body: bad"), chat_errors.NotFound("no such thing"),
                                 chat_errors.RateLimited("slow down", retry_after_ms=1200, ref="k-1")])
def test_every_error_body_the_gateway_sends_fits_the_error_schema(exc):
    from gateway.http_errors import error_response
    import json

    body = json.loads(error_response(exc).body)
    assert responses.Error.model_validate(body).model_dump(exclude_unset=True) == body


# ---- the wire builders fit the models -----------------------------------------------------------

T0 = datetime(2026, 11, 28, 10, 0, tzinfo=timezone.utc)
MESSAGE = {"conversation_id": "c1", "seq": 3, "kind": "message", "sender_id": "u1", "client_msg_id": "k-1",
           "body": "hi", "attachments": [], "reply_to": None, "created_at": T0, "terms": ["hi"]}
CHANGES = [
    {"kind": "edit", "target_seq": 3, "body": "hello"},
    {"kind": "delete", "target_seq": 3},
    {"kind": "reaction", "target_seq": 3, "emoji": "👍", "on": True},
    {"kind": "member_added", "user_ids": ["u3"]},
    {"kind": "member_removed", "user_ids": ["u3"]},
    {"kind": "role_changed", "user_ids": ["u2"], "role": "admin"},
    {"kind": "title_changed", "title": "new"},
]


@pytest.mark.parametrize("change", CHANGES, ids=[c["kind"] for c in CHANGES])
def test_every_event_kind_fits_the_event_model(change):
    ev = {"conversation_id": "c1", "seq": 4, "sender_id": "u1", "client_msg_id": None, "created_at": T0, **change}
    wire = event_to_wire(ev)
    assert responses.Event.model_validate(wire).model_dump(exclude_unset=True) == wire


def test_a_stored_message_with_its_projections_fits_the_event_model():
    edited = {**MESSAGE, "body": "hello", "edited_at": T0, "reactions": [{"emoji": "👍", "user_id": "u2"}]}
    deleted = {**MESSAGE, "deleted": True}
    for ev in (MESSAGE, edited, deleted):
        wire = event_to_wire(ev)
        assert responses.Event.model_validate(wire).model_dump(exclude_unset=True) == wire


def test_a_conversation_fits_the_conversation_model():
    conv = {"conversation_id": "c1", "kind": "group", "title": "g", "members": ["u1", "u2"],
            "roles": {"u1": "owner", "u2": "member"}, "created_at": T0, "last_seq": 3, "last_activity_at": T0,
            "message_count": 3, "reads": {"u1": {"seq": 3, "count": 3}},
            "last_message": {"seq": 3, "sender_id": "u1", "kind": "message", "body": "hi", "created_at": T0}}
    for wire in (ChatService.conversation_wire(conv), ChatService.conversation_wire(conv, "u1"),
                 ChatService.conversation_wire({**conv, "last_message": None}, "u2")):
        assert responses.Conversation.model_validate(wire).model_dump(exclude_unset=True) == wire

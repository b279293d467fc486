"""Schemathesis over the live session raychat: each route in GET /openapi.json, fuzzed through Ray
Serve, answers only with a status the document lists, a body that fits its schema, and never a 5xx.

The run is schemathesis's own command line (its pytest plugin does not load under pytest 9), in
deterministic mode so it is the same run every time; on failure the assertion shows its report, with
a curl line per failure. Requests carry a real user's bearer token, and path parameters are pinned
to objects that user can reach (a group with a message, another member), so fuzzing gets past 404
into the handlers.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

# Fuzzed examples per route; the coverage phase adds each route's boundary and schema-violating
# cases on top. Together they keep the run under ~2 minutes on 2 cores.
EXAMPLES_PER_ROUTE = 12
CHECKS = [
    "not_a_server_error",            # no 5xx at all (a 503 would mean the run overloaded the stores)
    "status_code_conformance",       # only documented statuses
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",   # bodies, error bodies included, fit their schemas
    "negative_data_rejection",       # input the schema forbids gets a 4xx
    "missing_required_header",       # no token: 401
    "ignored_auth",                  # the declared bearer scheme is enforced
    "unsupported_method",            # an undeclared method: 405 with Allow...
    "allow_header_conformance",      # ...listing exactly the documented methods
]
# Not run: positive_data_acceptance (a schema cannot say "a title for groups" or "a member that
# exists", so some schema-valid input is refused, rightly), and the stateful checks, which need
# links between operations that the document does not declare.

# Statuses that count as rejecting invalid input: schemathesis's list plus 413, which is how a body
# too big for the gateway (a member list over maxItems, say) is refused before it is parsed.
REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429]


def _user(client: httpx.Client, prefix: str) -> dict:
    creds = {"username": f"{prefix}{uuid.uuid4().hex[:10]}", "password": "correct horse battery"}
    r = client.post("/v1/auth/register", json=creds)
    assert r.status_code == 201, r.text
    r = client.post("/v1/auth/login", json=creds)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def fuzz_world(raychat):
    """A user with a group (one message in it) shared with a second user."""
    with httpx.Client(base_url=raychat.base_url, timeout=30) as client:
        alice, bob = _user(client, "st_a"), _user(client, "st_b")
        auth = {"Authorization": f"Bearer {alice['access_token']}"}
        r = client.post("/v1/conversations", headers=auth,
                        json={"kind": "group", "title": "fuzzed", "members": [bob["user_id"]]})
        assert r.status_code == 201, r.text
        cid = r.json()["conversation_id"]
        r = client.post(f"/v1/conversations/{cid}/messages", headers=auth, json={"client_msg_id": "m1", "body": "hi"})
        assert r.status_code == 201, r.text
        operations = {(m.upper(), p) for p, ops in client.get("/openapi.json").json()["paths"].items() for m in ops}
    return {"token": alice["access_token"], "operations": operations,
            "path": {"cid": cid, "user_id": bob["user_id"], "member": bob["user_id"], "seq": 1}}


def _config(path, world) -> None:
    # GET /v1/stream never ends by itself: read its first message (welcome) and check that.
    lines = ["max-stream-events = 1", "", "[parameters]"]
    lines += [f'"path.{name}" = {json.dumps(value)}' for name, value in world["path"].items()]
    lines += ["", "[checks.negative_data_rejection]", f"expected-statuses = {REJECTIONS}"]
    path.write_text("\n".join(lines) + "\n")


def test_every_route_answers_as_documented(raychat, fuzz_world, tmp_path):
    config = tmp_path / "schemathesis.toml"
    _config(config, fuzz_world)
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
               "run", raychat.base_url + "/openapi.json",
               "--header", f"Authorization: Bearer {fuzz_world['token']}",
               "--checks", ",".join(CHECKS),
               "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(EXAMPLES_PER_ROUTE),
               "--generation-deterministic",   # no example database either
               "--suppress-health-check", "all",
               "--workers", "1", "--request-timeout", "30"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    report = out.stdout[-30_000:] + out.stderr[-5_000:]
    assert out.returncode == 0, report

    # A run that quietly tested nothing would pass too: every operation in the document ran.
    tested = re.search(r"Tested:\s+(\d+)", out.stdout)
    assert tested and int(tested.group(1)) == len(fuzz_world["operations"]), report
    assert re.search(r"(\d+) generated, \1 passed", out.stdout), report

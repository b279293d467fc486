"""raychat/logs.py: JSON lines with the work's context, and no secret in any line, whatever a
log call passes (arguments, ``extra`` fields, exception messages)."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging

import pytest

from raychat import logs

JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MTIzIn0.c2lnbmF0dXJlLWJ5dGVz"
PASSWORD = "hunter2-correct-horse"
BODY = "meet me at the usual place"
SECRETS = (JWT, PASSWORD, BODY, "opaque-refresh-9f8e7d")


@pytest.fixture
def output():
    """A raychat handler on the root logger writing JSON to a buffer; removed afterwards."""
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("DEBUG", "json", stream=buf)
    token = logs.new_context()
    try:
        yield buf
    finally:
        logs.reset(token)
        root.removeHandler(handler)
        root.setLevel(level)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]


def assert_no_secret(buf: io.StringIO) -> None:
    text = buf.getvalue()
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked: {text}"


def test_a_line_has_time_level_logger_message_and_the_context(output):
    logs.new_context(request_id="req-1")
    logs.bind(user_id="u1", conversation_id="c1")
    logging.getLogger("gateway.test").warning("sent %d frames", 3)
    (line,) = lines(output)
    assert line["level"] == "WARNING" and line["logger"] == "gateway.test" and line["message"] == "sent 3 frames"
    assert line["time"].endswith("Z") and "T" in line["time"]
    assert (line["request_id"], line["user_id"], line["conversation_id"]) == ("req-1", "u1", "c1")


def test_secrets_in_arguments_never_print(output):
    log = logging.getLogger("gateway.test")
    log.info("login with %s", {"username": "alice", "password": PASSWORD, "refresh_token": SECRETS[3]})
    log.info("frame %s", json.dumps({"type": "send", "conversation_id": "c1", "body": BODY}))
    log.info("GET /v1/stream?access_token=%s&since=c1:3", JWT)
    log.info("header Authorization: Bearer %s", SECRETS[3])
    log.info("a token on its own: %s", JWT)
    log.info("store at mongodb://raychat:%s@db1:27017/raychat and redis://:%s@cache:6379/0", PASSWORD, PASSWORD)
    assert_no_secret(output)
    got = [line["message"] for line in lines(output)]
    assert "'username': 'alice'" in got[0] and "'password': '[redacted]'" in got[0]
    assert '"conversation_id": "c1"' in got[1] and '"body": "[redacted]"' in got[1]
    assert "since=c1:3" in got[2]
    assert "mongodb://raychat:[redacted]@db1:27017/raychat" in got[5] and "redis://:[redacted]@cache" in got[5]


def test_secret_extra_fields_are_redacted(output):
    logging.getLogger("gateway.test").info("logged in", extra={"password": PASSWORD, "body": BODY,
                                                               "captcha_token": "x", "device": {"token": JWT}})
    (line,) = lines(output)
    assert line["password"] == line["body"] == line["captcha_token"] == logs.REDACTED
    assert line["device"] == {"token": logs.REDACTED}
    assert_no_secret(output)


def test_an_exception_message_with_a_token_never_prints(output):
    try:
        raise ValueError(f"bad token {JWT} for password={PASSWORD}")
    except ValueError:
        logging.getLogger("gateway.test").exception("handler failed")
    (line,) = lines(output)
    assert "ValueError" in line["exc_info"] and "Traceback" in line["exc_info"]
    assert_no_secret(output)


def test_field_names_in_plain_words_are_left_alone(output):
    logging.getLogger("gateway.test").info("refused: body: at most 16384 bytes; token expired")
    (line,) = lines(output)
    assert line["message"] == "refused: body: at most 16384 bytes; token expired"


def test_the_text_format_carries_the_context_and_redacts_too():
    buf = io.StringIO()
    root = logging.getLogger()
    handler = logs.configure("INFO", "text", stream=buf)
    token = logs.new_context(request_id="req-2", user_id="u2")
    try:
        logging.getLogger("gateway.test").info("token=%s", JWT)
    finally:
        logs.reset(token)
        root.removeHandler(handler)
    line = buf.getvalue().strip()
    assert line.endswith("[request_id=req-2 user_id=u2]") and "INFO gateway.test: token=[redacted]" in line
    assert JWT not in line


def test_configure_twice_leaves_one_handler():
    root = logging.getLogger()
    first = logs.configure("INFO", "text", stream=io.StringIO())
    second = logs.configure("INFO", "json", stream=io.StringIO())
    try:
        ours = [h for h in root.handlers if getattr(h, "_raychat", False)]
        assert ours == [second] and first not in root.handlers
    finally:
        root.removeHandler(second)


async def test_bind_reaches_the_whole_request_even_from_a_worker_thread():
    """FastAPI runs a sync dependency (the bearer check) in a thread, on a copy of the context:
    the user id it binds must still show on the request's later lines."""
    token = logs.new_context(request_id="r")
    try:
        await asyncio.to_thread(logs.bind, user_id="u9")
        assert logs.current() == {"request_id": "r", "user_id": "u9"}
    finally:
        logs.reset(token)


async def test_scoped_fields_stay_in_their_task():
    token = logs.new_context(request_id="r", socket_id="s1")
    try:
        context = contextvars.copy_context()
        context.run(logs.scoped, conversation_id="c7")
        inner = await asyncio.get_running_loop().create_task(_current(), context=context)
        assert inner == {"request_id": "r", "socket_id": "s1", "conversation_id": "c7"}
        assert logs.current() == {"request_id": "r", "socket_id": "s1"}
    finally:
        logs.reset(token)


async def _current() -> dict:
    return logs.current()


async def test_a_detached_background_task_does_not_log_as_the_request_that_started_it():
    token = logs.new_context(request_id="r", user_id="u1")
    try:
        task = logs.detached(asyncio.get_running_loop().create_task, _current())
        assert await task == {}
        assert logs.current() == {"request_id": "r", "user_id": "u1"}
    finally:
        logs.reset(token)

"""Logs: one configuration for every raychat process (gateway replicas, ActorHosts, the
directory, push workers, the CLI), as JSON lines or text, with the context of the work in hand
and never a secret.

JSON lines come from python-json-logger (the long-kept JSON formatter for the standard logging
module): ``time`` (ISO 8601 UTC, ms), ``level``, ``logger``, ``message``, then the context that
is known: ``request_id``, ``user_id``, ``conversation_id``, ``socket_id``, and any ``extra``.

Context lives in a contextvar holding one dict per unit of work:

- ``new_context(...)`` starts one (an HTTP request: gateway/request_ids.py; a WebSocket);
- ``bind(...)`` adds to it *in place*, so a field learnt deep down (the caller's user id, by
  the auth dependency, which FastAPI may run in a worker thread on a copy of the context) shows
  on every later line of the same request;
- ``scoped(...)`` gives the current task alone a copy with more fields (one frame's
  conversation, one virtual actor's message), leaving the rest of the request unchanged.

Redaction (``RedactSecrets``, on the handler, so it sees every record) rewrites each record
before any formatter runs: values of keys named like a token, password, secret, authorization
or body become ``[redacted]`` (as ``extra`` fields, ``key=value``, ``"key": value`` or
``'key': value`` in the message or a traceback), and so do ``Bearer <…>``, JWT-shaped strings
and the password of a URL (``mongodb://user:…@host``). It is
a net, not a licence: log calls still name ids, never bodies or credentials.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from typing import Any, Callable, Iterator, Literal, Mapping, TextIO, TypeVar

from pythonjsonlogger.json import JsonFormatter

from raychat.clock import iso

CONTEXT_FIELDS = ("request_id", "user_id", "conversation_id", "socket_id")
T = TypeVar("T")
REDACTED = "[redacted]"

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("raychat_log_context",
                                                                                   default=None)


# ---- context -------------------------------------------------------------------------------
def new_context(**fields: Any) -> contextvars.Token:
    """Start a fresh context for this task and what it spawns (``reset`` ends it)."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def bind(**fields: Any) -> None:
    """Add fields to the current context, visible to everything that shares it."""
    ctx = _context.get()
    if ctx is None:
        _context.set({k: v for k, v in fields.items() if v is not None})
    else:
        ctx.update((k, v) for k, v in fields.items() if v is not None)


def scoped(**fields: Any) -> contextvars.Token:
    """Give this task (and tasks it spawns from now on) the current context plus ``fields``."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v is not None}})


def reset(token: contextvars.Token) -> None:
    _context.reset(token)


def current() -> dict[str, Any]:
    """A copy of the current context."""
    return dict(_context.get() or {})


def detached(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn`` outside any log context: a background task it starts (a replica's stream
    consumers, say) must not log for ever as the request that happened to start it."""
    return contextvars.Context().run(fn, *args)


class AddContext(logging.Filter):
    """Copies the current context onto each record (a field given as ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# ---- redaction ----------------------------------------------------------------------------
# Key names whose values are secret or private: tokens of every kind (access_token,
# refresh_token, captcha_token, id_token…), passwords, secrets (jwt_secret, s3_secret_key…),
# Authorization headers, API keys, and message bodies.
_SECRET_KEY = r"[a-z0-9_-]*(?:token|passw(?:or)?d|secret|authori[sz]ation|api[_-]?key)[a-z0-9_-]*|body"
_SECRET_KEY_RE = re.compile(rf"(?:{_SECRET_KEY})", re.IGNORECASE)
_VALUE = r"""(?:"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&}\])]+)"""
_PATTERNS = (
    # "key": value and 'key': value (JSON, dict reprs), also key=value (query strings, kwargs).
    (re.compile(rf"""(?P<q>["'])(?P<k>{_SECRET_KEY})(?P=q)(?P<sep>\s*[:=]\s*){_VALUE}""", re.IGNORECASE),
     lambda m: f"{m['q']}{m['k']}{m['q']}{m['sep']}{m['q']}{REDACTED}{m['q']}"),
    (re.compile(rf"""\b(?P<k>{_SECRET_KEY})(?P<sep>=){_VALUE}""", re.IGNORECASE),
     lambda m: f"{m['k']}={REDACTED}"),
    (re.compile(r"\b(?P<k>bearer)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE), lambda m: f"{m['k']} {REDACTED}"),
    # A password in a URL: mongodb://user:pass@host, redis://:pass@host.
    (re.compile(r"\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^\s:/@]*):[^\s/@]+@", re.IGNORECASE),
     lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@"),
    # A JWT anywhere: three base64url parts, the first of them a JSON object ("eyJ" = '{"').
    (re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), lambda m: REDACTED),
)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def redact(text: str) -> str:
    """``text`` with secret-looking values replaced by ``[redacted]``."""
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def is_secret_key(key: str) -> bool:
    return _SECRET_KEY_RE.fullmatch(key) is not None


def redact_value(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact(value)
    if depth < 4 and isinstance(value, Mapping):
        return {k: REDACTED if isinstance(k, str) and is_secret_key(k) else redact_value(v, depth + 1)
                for k, v in value.items()}
    if depth < 4 and isinstance(value, (list, tuple)):
        return [redact_value(v, depth + 1) for v in value]
    return value


class RedactSecrets(logging.Filter):
    """Rewrites a record so that no formatter, of any handler after this one, can print a secret."""

    _plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:    # bad arguments: logging prints the bare msg, so redact that
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = self._plain.formatException(record.exc_info)
            record.exc_info = None      # formatters print exc_text instead
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key in _STANDARD:
                continue
            setattr(record, key, REDACTED if is_secret_key(key) else redact_value(value))
        return True


# ---- formats ---------------------------------------------------------------------------------
class _Json(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso(record.created)


class _Text(logging.Formatter):
    """``time level logger: message [context]``: for a terminal and for tests."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso(record.created)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _extras(record))
        if not extra:
            return line
        first, nl, rest = line.partition("\n")     # a traceback stays below the line
        return f"{first} [{extra}]{nl}{rest}"


def _extras(record: logging.LogRecord) -> Iterator[tuple[str, Any]]:
    for key in CONTEXT_FIELDS:
        if getattr(record, key, None) is not None:
            yield key, getattr(record, key)
    for key, value in vars(record).items():
        if key not in _STANDARD and key not in CONTEXT_FIELDS and not key.startswith("_"):
            yield key, value


def formatter(fmt: Literal["json", "text"]) -> logging.Formatter:
    if fmt == "json":
        return _Json("{asctime}{levelname}{name}{message}", style="{",
                     rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                     json_ensure_ascii=False)
    return _Text()


def handler(fmt: Literal["json", "text"] = "json", stream: TextIO | None = None) -> logging.Handler:
    """A handler with raychat's context, redaction and format (``configure`` installs one)."""
    h = logging.StreamHandler(stream or sys.stderr)
    h.addFilter(AddContext())
    h.addFilter(RedactSecrets())
    h.setFormatter(formatter(fmt))
    h._raychat = True       # type: ignore[attr-defined]  # so configure() replaces only its own
    return h


def configure(level: str = "INFO", fmt: Literal["json", "text"] = "json",
              stream: TextIO | None = None) -> logging.Handler:
    """Send this process's logs (the root logger's) through one raychat handler, at ``level``.

    Idempotent: a second call replaces the handler of the first. Handlers others installed stay.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_raychat", False)]:
        root.removeHandler(old)
    h = handler(fmt, stream)
    root.addHandler(h)
    root.setLevel(level)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    return h


# Client libraries that log every request they make at INFO (a push delivery, a JWKS fetch):
# below DEBUG only their warnings are worth a line.
_CHATTY = ("httpx", "httpcore")

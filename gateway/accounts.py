"""Account field rules (protocol v1, Accounts): what a username, password and display name may be.

Each check raises ``raychat.errors.Invalid`` with a message that names the field.
"""

from __future__ import annotations

import re
import unicodedata

from raychat.errors import Invalid

USERNAME_MIN, USERNAME_MAX = 3, 32
PASSWORD_MIN, PASSWORD_MAX = 8, 256
DISPLAY_NAME_MAX = 64

_USERNAME = re.compile(r"[a-z0-9_.-]{%d,%d}" % (USERNAME_MIN, USERNAME_MAX))

# Unicode categories no display name may hold: controls, lone surrogates (JSON lets a client send
# "\ud800", which later fails to encode as UTF-8) and line/paragraph separators.
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
# Bidirectional embeddings, overrides and isolates: they make a name render as something else
# ("Trojan Source"). Other format characters stay allowed: emoji sequences need U+200D (ZWJ).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def normalize_username(raw: str) -> str:
    """The canonical username: NFKC, then case-folded, then 3-32 of ``[a-z0-9_.-]``.

    Normalizing first means "Alice", "ALICE" and fullwidth "ＡＬＩＣＥ" are one account, and the
    ASCII-only result leaves no look-alike letters from other scripts.
    """
    if not isinstance(raw, str):
        raise Invalid("username must be a string")
    name = unicodedata.normalize("NFKC", raw).casefold()
    if not _USERNAME.fullmatch(name):
        raise Invalid(f"username must be {USERNAME_MIN}-{USERNAME_MAX} characters of a-z, 0-9, '_', '.' or '-'")
    return name


def derive_username(hint: str | None) -> str:
    """A valid username made from a hint (an OpenID Connect ``preferred_username``, or the local
    part of an email): normalized as above, other characters dropped, at most 24 characters so a
    ``-xxxxxx`` suffix still fits, and ``user`` when fewer than 3 are left. Never raises."""
    name = unicodedata.normalize("NFKC", hint if isinstance(hint, str) else "").casefold()
    name = re.sub(r"[^a-z0-9_.-]+", "", name)[:USERNAME_MAX - 8]
    return name if len(name) >= USERNAME_MIN else "user"


def check_password(pw: str) -> None:
    """Accept a password of 8-256 characters (Unicode code points); any characters are allowed."""
    if not isinstance(pw, str):
        raise Invalid("password must be a string")
    if not PASSWORD_MIN <= len(pw) <= PASSWORD_MAX:
        raise Invalid(f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} characters")
    if any(unicodedata.category(c) == "Cs" for c in pw):
        raise Invalid("password must be valid Unicode (no lone surrogates)")


def check_display_name(name: str) -> str:
    """The display name with surrounding whitespace stripped: 1-64 characters, no control characters."""
    if not isinstance(name, str):
        raise Invalid("display_name must be a string")
    name = name.strip()
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise Invalid(f"display_name must be 1-{DISPLAY_NAME_MAX} characters")
    if any(c in _BIDI_CONTROLS or unicodedata.category(c) in _BAD_CATEGORIES for c in name):
        raise Invalid("display_name must not contain control characters")
    return name

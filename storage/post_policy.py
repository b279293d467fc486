"""S3 POST policies for the disk adapter: the same form a client sends to S3, signed with HMAC.

The policy document is S3's (base64 of ``{"expiration", "conditions"}``), so a client uploads to
disk mode and to S3 with one piece of code: POST every field it was given, then ``file``. Only the
signature differs: S3 signs with SigV4 (``x-amz-*`` fields); here ``x-raychat-signature`` is
HMAC-SHA256 of the base64 policy under the server's media key. Pure: no I/O, time passed in.

As S3 does, the check is strict: every form field must be named by a condition (but the policy,
its signature and ``file``), each condition must hold, and a policy past its expiration is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

SIGNATURE_FIELD = "x-raychat-signature"
_UNSIGNED_FIELDS = frozenset({"policy", SIGNATURE_FIELD, "file"})


class UploadRefused(Exception):
    """The upload is refused: ``status`` and ``s3_code`` are what S3 answers for the same case
    (403 AccessDenied for a bad or expired policy, 400 EntityTooLarge / EntityTooSmall ...)."""

    def __init__(self, status: int, s3_code: str, message: str):
        super().__init__(f"{s3_code}: {message}")
        self.status = status
        self.s3_code = s3_code
        self.message = message

    def __reduce__(self):
        return (type(self), (self.status, self.s3_code, self.message))


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """What a verified policy allows: one object at ``key`` of this type and size range."""
    key: str
    content_type: str
    min_size: int
    max_size: int


def iso_expiration(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def make(bucket: str, key: str, content_type: str, min_size: int, max_size: int, expires_at: float) -> str:
    """The base64 policy document, with the conditions in the order S3 clients write them."""
    doc = {"expiration": iso_expiration(expires_at),
           "conditions": [["eq", "$bucket", bucket], ["eq", "$key", key], ["eq", "$Content-Type", content_type],
                          ["content-length-range", min_size, max_size]]}
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def sign(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def signed_fields(secret: bytes, bucket: str, key: str, content_type: str, min_size: int, max_size: int,
                  expires_at: float) -> dict[str, str]:
    policy = make(bucket, key, content_type, min_size, max_size, expires_at)
    return {"key": key, "Content-Type": content_type, "policy": policy,
            SIGNATURE_FIELD: sign(secret, "POST\n" + policy)}


def decode(policy: str) -> dict[str, Any]:
    """The policy document, or UploadRefused(400) if it is not base64 of a JSON object."""
    try:
        doc = json.loads(base64.b64decode(policy.encode("ascii"), validate=True))
    except (ValueError, binascii.Error, UnicodeError):
        raise UploadRefused(400, "InvalidPolicyDocument", "policy: not base64 of a JSON document") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("conditions"), list):
        raise UploadRefused(400, "InvalidPolicyDocument", "policy: no conditions")
    return doc


def verify(secret: bytes, bucket: str, fields: Mapping[str, str], now: float) -> UploadTarget:
    """Check the form fields that came before ``file`` against their signed policy.

    Field names compare case-insensitively, as S3 does (``content-type`` is ``Content-Type``).
    Raises UploadRefused: 403 AccessDenied for a missing or wrong signature, an expired policy,
    a condition that fails or a field no condition names; 400 for a malformed policy.
    """
    form = {name.lower(): value for name, value in fields.items()}
    policy, signature = form.get("policy"), form.get(SIGNATURE_FIELD)
    if not policy or not signature:
        raise UploadRefused(403, "AccessDenied", "policy and x-raychat-signature fields are required")
    if not hmac.compare_digest(sign(secret, "POST\n" + policy), signature.lower()):
        raise UploadRefused(403, "AccessDenied", "the policy signature does not match")
    doc = decode(policy)        # signed by us: only a bug makes this fail
    try:
        expiration = datetime.fromisoformat(str(doc.get("expiration")).replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise UploadRefused(400, "InvalidPolicyDocument", "policy: bad expiration") from None
    if now >= expiration:
        raise UploadRefused(403, "AccessDenied", "the policy expired")
    named, eq, size = {"bucket"}, {"bucket": bucket}, None
    for cond in doc["conditions"]:
        if isinstance(cond, list) and len(cond) == 3 and cond[0] == "content-length-range":
            size = (int(cond[1]), int(cond[2]))
        elif isinstance(cond, list) and len(cond) == 3 and cond[0] == "eq" and str(cond[1]).startswith("$"):
            name = str(cond[1])[1:].lower()
            named.add(name)
            actual = bucket if name == "bucket" else form.get(name)
            if actual != cond[2]:
                raise UploadRefused(403, "AccessDenied", f"invalid according to policy: {name} must be {cond[2]!r}")
        else:
            # We only ever sign the conditions above; anything else is not a policy of ours.
            raise UploadRefused(400, "InvalidPolicyDocument", "policy: unsupported condition")
    extra = sorted(set(form) - named - _UNSIGNED_FIELDS)
    if extra:
        raise UploadRefused(403, "AccessDenied", f"invalid according to policy: extra input fields {extra[:5]}")
    if size is None or "key" not in named or "content-type" not in named:
        raise UploadRefused(400, "InvalidPolicyDocument", "policy: must pin key, Content-Type and size")
    return UploadTarget(form["key"], form["content-type"], size[0], size[1])

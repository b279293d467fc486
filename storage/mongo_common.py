"""What the MongoDB stores share: index specs and the one place pymongo errors become ours.

Every ``mongo_*`` module catches driver errors only through ``translate`` /
``mongo_errors``, so the mapping below is the whole story of what a caller can see.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Mapping, Sequence, TypeVar

import bson
import pymongo
from bson.errors import BSONError
from pymongo import IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    WriteConcernError,
)

from storage.errors import DuplicateKey, StoreError, StoreRejected, StoreUnavailable, counted

DUPLICATE_KEY = 11000

# Server codes that mean "not now" rather than "never": the node is shutting down,
# stepping down, unreachable or out of time. They match pymongo's own retryable set.
_UNAVAILABLE_CODES = frozenset({
    6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436,
})
# A write concern the deployment can never satisfy is a configuration error, not an
# outage: retrying it would fail forever.
_BAD_WRITE_CONCERN_CODES = frozenset({79, 100})

_INDEX_NAME_IN_ERRMSG = re.compile(r"index: (\S+) dup key")


@dataclass(frozen=True)
class Index:
    """A unique (or plain) index and the port-level ``key`` a duplicate on it reports."""

    name: str
    keys: tuple[tuple[str, int], ...]
    key: str = ""
    unique: bool = False
    partial: Mapping[str, Any] | None = None
    builtin: bool = False          # ``_id_``: exists already, never created by us
    expire_after_s: int | None = None   # a TTL index: the server deletes a document this long after its date
    fields: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(name for name, _ in self.keys))

    def model(self) -> IndexModel:
        options: dict[str, Any] = {"name": self.name, "unique": self.unique}
        if self.partial is not None:
            options["partialFilterExpression"] = dict(self.partial)
        if self.expire_after_s is not None:
            options["expireAfterSeconds"] = self.expire_after_s
        return IndexModel(list(self.keys), **options)


async def ensure(collection: AsyncCollection, indexes: Sequence[Index]) -> None:
    """Create the indexes; a no-op for those that exist with the same spec."""
    models = [index.model() for index in indexes if not index.builtin]
    if models:
        with mongo_errors(indexes):
            await collection.create_indexes(models)


def index_hit(error: Mapping[str, Any], indexes: Sequence[Index]) -> Index | None:
    """Which of ``indexes`` a duplicate-key error document names.

    ``keyPattern`` is what mongod (4.4+) and SecantusDB report; older servers only
    name the index inside ``errmsg``, hence the fallback.
    """
    pattern = error.get("keyPattern")
    if isinstance(pattern, Mapping):
        fields = tuple(pattern)
        for index in indexes:
            if index.fields == fields:
                return index
    match = _INDEX_NAME_IN_ERRMSG.search(str(error.get("errmsg", "")))
    if match:
        for index in indexes:
            if index.name == match.group(1):
                return index
    return None


def translate(exc: PyMongoError | BSONError, indexes: Sequence[Index] = ()) -> StoreError:
    """The storage error a pymongo/bson error means (the caller raises it ``from exc``)."""
    return counted("mongo", _translate(exc, indexes))


def _translate(exc: PyMongoError | BSONError, indexes: Sequence[Index]) -> StoreError:
    if isinstance(exc, BSONError):
        return StoreRejected(f"document cannot be stored: {exc}")
    if isinstance(exc, ConnectionFailure) or exc.timeout:
        return StoreUnavailable(str(exc))
    if isinstance(exc, BulkWriteError):
        if exc.details.get("writeConcernErrors"):
            return _write_concern(exc.details["writeConcernErrors"][0])
        errors = exc.details.get("writeErrors")
        return _write_error(errors[0], indexes) if errors else StoreRejected(str(exc))
    if isinstance(exc, WriteConcernError):
        return _write_concern(exc.details or {"code": exc.code, "errmsg": str(exc)})
    if isinstance(exc, OperationFailure):
        if exc.code == DUPLICATE_KEY:
            return _write_error(exc.details or {"code": DUPLICATE_KEY, "errmsg": str(exc)}, indexes)
        if exc.code in _UNAVAILABLE_CODES or exc.has_error_label("RetryableWriteError"):
            return StoreUnavailable(str(exc))
    return StoreRejected(str(exc))


def _write_error(error: Mapping[str, Any], indexes: Sequence[Index]) -> StoreError:
    if error.get("code") != DUPLICATE_KEY:
        return StoreRejected(str(error.get("errmsg", error)))
    index = index_hit(error, indexes)
    return DuplicateKey(index.key if index else "")


def _write_concern(error: Mapping[str, Any]) -> StoreError:
    # The write was applied on the primary but is not known to be durable under the
    # requested concern: "outcome unknown" is exactly StoreUnavailable's meaning.
    if error.get("code") in _BAD_WRITE_CONCERN_CODES:
        return StoreRejected(f"write concern cannot be satisfied: {error.get('errmsg')}")
    return StoreUnavailable(f"write not confirmed durable: {error.get('errmsg')}")


def resendable(exc: PyMongoError) -> bool:
    """Whether a write that failed so may be sent once more: the reply was lost or the server
    said "retry me", and the deadline has not passed. What pymongo's retryable writes re-send."""
    if exc.timeout:
        return False
    if isinstance(exc, ConnectionFailure) or exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, BulkWriteError):
        concern = exc.details.get("writeConcernErrors") or []
        return bool(concern) and not exc.details.get("writeErrors") and concern[0].get("code") in _UNAVAILABLE_CODES
    return isinstance(exc, (OperationFailure, WriteConcernError)) and exc.code in _UNAVAILABLE_CODES


T = TypeVar("T")


async def resending(write: Callable[[], Awaitable[T]], timeout_s: float, indexes: Sequence[Index] = ()) -> T:
    """Run an idempotent ``write``, and once more if its outcome was lost (``resendable``).

    For writes on the client without retryable writes (``MongoStores``): a re-sent ``$set``
    guarded by a version, or a ``$max``, changes nothing a second time, so the driver's
    bookkeeping for exactly-once retries buys these writes nothing. One deadline covers both.
    """
    with mongo_errors(indexes), pymongo.timeout(timeout_s):
        try:
            return await write()
        except PyMongoError as exc:
            if not resendable(exc):
                raise
        return await write()


@contextmanager
def mongo_errors(indexes: Sequence[Index] = ()) -> Iterator[None]:
    """Turn every pymongo/bson error raised inside the block into a storage error."""
    try:
        yield
    except (PyMongoError, BSONError) as exc:
        raise translate(exc, indexes) from exc
    except UnicodeEncodeError as exc:
        # The driver's encoder meets a lone surrogate (JSON can carry one; UTF-8 cannot).
        raise counted("mongo", StoreRejected(f"document cannot be stored: {exc}")) from exc


def as_stored(doc: Mapping[str, Any], collection: AsyncCollection) -> dict[str, Any]:
    """``doc`` exactly as a read would return it (ms precision, aware UTC times, no tuples),
    without the round trip."""
    with mongo_errors():
        return bson.decode(bson.encode(doc), codec_options=collection.codec_options)


def rename(doc: Mapping[str, Any], old: str, new: str) -> dict[str, Any]:
    """A copy of ``doc`` with key ``old`` renamed to ``new`` and placed first."""
    out = {new: doc[old]}
    out.update((k, v) for k, v in doc.items() if k != old)
    return out

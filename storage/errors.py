"""Storage errors: what every adapter raises, whatever its driver.

    StoreError
    ├── StoreUnavailable      the server could not be reached or did not answer in time;
    │                         the outcome of a write is unknown (it may have been applied)
    ├── DuplicateKey          a unique index refused a write
    │   └── DuplicateEvent    EventStore.append: carries which event and which index
    └── StoreRejected         the server refused the request for another reason (a bug or bad data)
        └── EventRefused      EventStore.append: that event cannot be stored at all; carries which

Adapters translate driver errors into these at their boundary (``raise … from exc``),
so nothing above storage ever imports pymongo or redis to catch an error.
All are picklable with their fields, so they may cross Ray actor boundaries.

Every error an adapter translates is tallied in ``TALLY`` by (adapter, error class), for the
process's metrics (raychat/metrics.py reads it; storage imports nothing of ours).
"""

from __future__ import annotations

from collections import Counter
from typing import TypeVar


class StoreError(Exception):
    def __reduce__(self):
        return (type(self), self.args)


class StoreUnavailable(StoreError):
    pass


class StoreRejected(StoreError):
    pass


class DuplicateKey(StoreError):
    def __init__(self, key: str = ""):
        super().__init__(key)
        self.key = key


class DuplicateEvent(DuplicateKey):
    """``append`` stopped at ``index``: events before it are stored, it and the rest are not.

    ``key`` is ``"seq"`` (another writer holds that seq: the fence) or
    ``"client_msg_id"`` (that sender already sent that id).
    """

    def __init__(self, key: str = "", index: int = 0):
        super().__init__(key)
        self.args = (key, index)
        self.index = index


class EventRefused(StoreRejected):
    """``append`` stopped at ``index`` because the store cannot take that event itself (text that
    is not valid Unicode, a document over the size limit): events before it are stored, it and
    the rest are not. Not an outage and not the fence: the events after it may be sent again."""

    def __init__(self, message: str = "", index: int = 0):
        super().__init__(message)
        self.args = (message, index)
        self.index = index


# (adapter, error class name) -> how many this process translated. A dict increment: cheap
# enough for any path, and never a reason for an adapter call to fail.
TALLY: Counter[tuple[str, str]] = Counter()

E = TypeVar("E", bound=StoreError)


def counted(adapter: str, error: E) -> E:
    """Tally ``error`` as one ``adapter`` ("mongo", "redis", "s3", "disk") translated; returns it."""
    TALLY[(adapter, type(error).__name__)] += 1
    return error

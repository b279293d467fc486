"""Storage errors: what every adapter raises, whatever its driver.

    StoreError
    ├── StoreUnavailable      the server could not be reached or did not answer in time;
    │                         the outcome of a write is unknown (it may have been applied)
    ├── DuplicateKey          a unique index refused a write
    │   └── DuplicateEvent    EventStore.append: carries which event and which index
    └── StoreRejected         the server refused the request for another reason (a bug or bad data)

Adapters translate driver errors into these at their boundary (``raise … from exc``),
so nothing above storage ever imports pymongo or redis to catch an error.
All are picklable with their fields, so they may cross Ray actor boundaries.
"""

from __future__ import annotations


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

"""Which host owns a key: rendezvous (highest-random-weight) hashing.

Every process computes the same owner from the same host list, with no
coordination; when a host joins or leaves, only the keys it wins or held move.
Python's hash() is salted per process, so a stable digest is used instead.
"""

from __future__ import annotations

import hashlib
from typing import Iterable, Sequence

Key = tuple[str, str]  # ("conv", cid) or ("user", uid)


def _weight(host: str, key: Key) -> int:
    digest = hashlib.blake2b(f"{host}\x00{key[0]}\x00{key[1]}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: Key, hosts: Sequence[str]) -> str:
    if not hosts:
        raise LookupError("no actor hosts are registered")
    return max(hosts, key=lambda h: _weight(h, key))


# Owners already computed, for the host list they were computed under: a group's fan-out asks
# for the same members' owners on every message (two hashes per member per host otherwise).
_MEMO_MAX = 200_000
_memo_hosts: tuple[str, ...] = ()
_memo: dict[Key, str] = {}


def cached_owner(key: Key, hosts: Sequence[str]) -> str:
    global _memo_hosts, _memo
    t = tuple(hosts)
    if t != _memo_hosts or len(_memo) >= _MEMO_MAX:
        _memo_hosts, _memo = t, {}
    found = _memo.get(key)
    if found is None:
        found = _memo[key] = owner(key, hosts)
    return found


def group_by_owner(kind: str, ids: Iterable[str], hosts: Sequence[str]) -> dict[str, list[str]]:
    """Split ids of one kind by their owning host: one entry per host, for one call each."""
    out: dict[str, list[str]] = {}
    for i in ids:
        out.setdefault(cached_owner((kind, i), hosts), []).append(i)
    return out


def not_owned(keys: Iterable[Key], me: str, hosts: Sequence[str]) -> list[Key]:
    """The keys a host holds that another host owns under ``hosts``: after a membership change
    it passivates them, so their new owner activates them from the store."""
    if not hosts:
        return list(keys)
    return [k for k in keys if owner(k, hosts) != me]

"""Soak mode of the fault suite: the same faults, with many clients, over and over, for long.

    .venv/bin/python -m tests.faults.soak --minutes 30 --clients 200

Runs pytest on tests/faults with ``--soak-minutes`` and ``--soak-clients``
(tests/fixtures_faults.py): only the tests that take the ``scale`` fixture are kept, each
repeats its fault for its share of the minutes while all clients keep sending, and the run
ends with one line per fault (sent, acked, retried, lost, duplicates, first ack after a
clear). Not part of CI: it is meant for a machine with cores to spare.
"""

from __future__ import annotations

import argparse
import sys

import pytest

# Each test may run for its whole share and then settle; pytest-timeout's per-test limit
# (pyproject.toml) would cut it, so it is raised to the share plus this much.
SETTLE_MARGIN_S = 900


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="total soak time, shared by the faults (default 30)")
    p.add_argument("--clients", type=int, default=200, help="clients chatting through each fault (default 200)")
    p.add_argument("-k", dest="keyword", help="only the faults whose test names match (pytest -k)")
    a, rest = p.parse_known_args(argv)
    if a.minutes <= 0 or a.clients < 2:
        p.error("--minutes must be positive and --clients at least 2")
    args = ["tests/faults", "-q", "-s", "-p", "no:cacheprovider", f"--soak-minutes={a.minutes}",
            f"--soak-clients={a.clients}", f"--timeout={int(a.minutes * 60 + SETTLE_MARGIN_S)}"]
    if a.keyword:
        args += ["-k", a.keyword]
    return pytest.main(args + rest)


if __name__ == "__main__":
    sys.exit(main())

"""What every job shares at its edge: arguments, settings, Ray, and a sentence instead of a traceback.

A job's ``main(argv)`` parses its arguments (a bad one: argparse's usage line, exit 2), reads the
``RAYCHAT_*`` settings (a bad one: the sentence from ``load_settings``), joins or starts Ray, runs,
and prints its report as one JSON object on stdout (exit 0). A refusal the operator can act on (a
restore into a database that holds data, an unknown user) is a ``JobError``: one line on stderr,
exit 1, nothing half done.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import date
from typing import Any, Callable

from pymongo.errors import ConnectionFailure, PyMongoError

from raychat.config import ConfigError, Settings, load_settings

# Ids that become path segments of the output (a user id in export_user): ours are "u_<hex>".
SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


class JobError(Exception):
    """A refusal or failure the operator can act on; ``run`` prints it and exits 1."""


def parser(job: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m jobs.{job}", description=description)
    p.add_argument("--address", default=None,
                   help="the Ray cluster to run on; default: RAY_ADDRESS (set by `ray job submit`), "
                        "else a cluster started with `ray start` on this machine, else a new local Ray")
    return p


def day(text: str) -> date:
    """argparse type for ``--date``: a calendar day, YYYY-MM-DD (UTC)."""
    try:
        if len(text) == 10:            # fromisoformat would also take 20261128
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a day like 2026-11-28")


def safe_id(text: str) -> str:
    if not SAFE_ID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an id (1-128 of A-Z a-z 0-9 _ -)")
    return text


def db_name(text: str) -> str:
    # MongoDB refuses / \ . " $ space and NUL in a database name; this is the portable subset.
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,63}", text):
        raise argparse.ArgumentTypeError(f"{text[:70]!r} is not a database name (1-63 of A-Z a-z 0-9 _ -)")
    return text


def settings() -> Settings:
    """The RAYCHAT_* settings; a job needs a MongoDB to read (raychat's embedded one is started by
    ``raychat up`` only, so the job cannot find it by itself)."""
    s = load_settings()
    if not s.mongodb_uri:
        raise ConfigError("raychat jobs: RAYCHAT_MONGODB_URI must be set to the database raychat uses "
                          "(for `raychat up`'s embedded one, the URI it logs at start)")
    return s


def start_ray(address: str | None) -> None:
    """Join the cluster (``ray job submit`` sets RAY_ADDRESS for the driver) or start a local Ray;
    in a process that runs Ray already (the tests, a notebook), use that one."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)


def cluster_cpus() -> int:
    """The CPUs of the cluster Ray runs on: how many blocks a small dataset is worth splitting into."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run(job: str, body: Callable[[], dict[str, Any]]) -> int:
    """Run the job body; its report goes to stdout as JSON, a JobError to stderr."""
    try:
        report = body()
    except JobError as exc:
        print(f"jobs.{job}: {exc}", file=sys.stderr)
        return 1
    except (ConnectionFailure, PyMongoError) as exc:
        if not isinstance(exc, ConnectionFailure) and not exc.timeout:
            raise
        print(f"jobs.{job}: MongoDB did not answer: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report, sort_keys=True, default=str))
    return 0

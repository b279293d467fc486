"""Where jobs write and read files: S3 (MinIO, AWS) from the RAYCHAT_S3_* settings, or a local path.

pyarrow's filesystems are what Ray Data's writers and readers take (``filesystem=``); they pickle,
so one built on the driver works in every task on every node. ``s3://bucket/prefix`` goes to
RAYCHAT_S3_ENDPOINT when it is set (MinIO), else to AWS with the usual credential chain.
"""

from __future__ import annotations

import argparse
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import pyarrow.fs as pafs
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink, WriteResult

from raychat.config import Settings

if TYPE_CHECKING:
    from ray.data._internal.execution.interfaces import TaskContext

# A dataset of ready-made JSON lines has two columns: the line, and the group (directory) it goes to.
LINE = "line"
GROUP = "group"


def destination(text: str) -> str:
    """argparse type for ``--out`` / ``--from``: ``s3://bucket[/prefix]`` or a local path."""
    if text.startswith("s3://"):
        if not text[5:].split("/", 1)[0]:
            raise argparse.ArgumentTypeError(f"{text[:80]!r} names no bucket (s3://bucket/prefix)")
        return text.rstrip("/")
    if "://" in text and not text.startswith("file://"):
        raise argparse.ArgumentTypeError(f"{text[:80]!r}: only s3://bucket/prefix or a local path")
    return str(Path(text.removeprefix("file://")).expanduser().absolute())


@dataclass(frozen=True)
class Location:
    """A directory on a filesystem: ``fs`` and the path in it (``bucket/prefix`` on S3)."""

    fs: Any             # pyarrow.fs.FileSystem
    path: str
    url: str

    def join(self, *parts: str) -> "Location":
        return Location(self.fs, posixpath.join(self.path, *parts), posixpath.join(self.url, *parts))

    def exists(self) -> bool:
        return self.fs.get_file_info(self.path).type != pafs.FileType.NotFound

    def read_text(self) -> str:
        with self.fs.open_input_stream(self.path) as f:
            return f.read().decode("utf-8")

    def write_text(self, text: str) -> None:
        parent = posixpath.dirname(self.path)
        if parent:
            self.fs.create_dir(parent, recursive=True)
        with self.fs.open_output_stream(self.path) as f:
            f.write(text.encode("utf-8"))

    def files(self) -> list[str]:
        """Paths of the files under this directory, sorted; none if it does not exist."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True, recursive=True))
        return sorted(i.path for i in infos if i.type == pafs.FileType.File)

    def clear(self) -> None:
        """Remove everything under this directory (a re-run replaces, never mixes, its output)."""
        if self.exists():
            self.fs.delete_dir_contents(self.path, missing_dir_ok=True)


def location(url: str, settings: Settings) -> Location:
    if url.startswith("s3://"):
        endpoint = settings.s3_endpoint
        fs = pafs.S3FileSystem(
            access_key=settings.s3_access_key, secret_key=settings.s3_secret_key,
            endpoint_override=endpoint, scheme=("https" if settings.s3_secure else "http") if endpoint else "https",
            region=settings.s3_region,
        )
        return Location(fs, url[5:], url)
    return Location(pafs.LocalFileSystem(), url, url)


class LinesDatasink(Datasink[dict[str, int]]):
    """Writes rows ``{group, line}`` as JSON-lines files: each group's lines under ``where/<group>/``.

    Rows arrive serialized, so nested, sparse or BSON-typed values never pass through Arrow's type
    inference (a ``reactions`` map would come out with every emoji of the block, most of them
    null). One dataset can hold several groups (a backup's collections, an export's parts) and is
    written by one pipeline. Each write task streams into ``part-<task index>.jsonl`` per group:
    a task Ray retries rewrites the same files, so no line is written twice. The caller clears the
    group directories first (``Location.clear``). ``counts`` holds the lines per group once done.
    """

    def __init__(self, where: Location, *, rows_per_file: int = 100_000):
        self.where = where
        self.rows_per_file = rows_per_file
        self.counts: dict[str, int] = {}

    def write(self, blocks: Iterable[Block], ctx: TaskContext) -> dict[str, int]:
        streams: dict[str, Any] = {}
        counts: dict[str, int] = {}
        try:
            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                if not table.num_rows:        # an empty block may come without columns
                    continue
                lines: dict[str, list[str]] = {}
                for group, line in zip(table.column(GROUP).to_pylist(), table.column(LINE).to_pylist()):
                    lines.setdefault(group, []).append(line)
                for group, chunk in lines.items():        # one write per group and block
                    if group not in streams:
                        path = self.where.join(group)
                        path.fs.create_dir(path.path, recursive=True)
                        streams[group] = path.fs.open_output_stream(f"{path.path}/part-{ctx.task_idx:05d}.jsonl")
                    streams[group].write(("\n".join(chunk) + "\n").encode("utf-8"))
                    counts[group] = counts.get(group, 0) + len(chunk)
        finally:
            for stream in streams.values():
                stream.close()
        return counts

    def on_write_complete(self, write_result: WriteResult[dict[str, int]]) -> None:
        for counts in write_result.write_returns:
            for group, n in counts.items():
                self.counts[group] = self.counts.get(group, 0) + int(n)

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_file

    @property
    def supports_distributed_writes(self) -> bool:
        # A local directory exists on the driver's machine only: write there. S3 is everywhere.
        return isinstance(self.where.fs, pafs.S3FileSystem)

"""Receiving an S3-style POST upload in disk mode, streamed (``POST /v1/blobs``).

The body is multipart/form-data as a client sends it to S3: the policy's fields, then ``file``.
python-multipart (the streaming parser Starlette itself uses; it never holds a part in memory)
cuts the stream into parts. Its callbacks only queue what they see; after each chunk of the
body the queue is worked off here, so that the policy is verified when ``file`` begins, before
a byte of it is written, and the upload is refused within the chunk that passes the maximum.
Fields after ``file`` are ignored, as S3 ignores them.
"""

from __future__ import annotations

from typing import AsyncIterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from storage.disk_blobs import DiskBlobStore, DiskUpload
from storage.post_policy import UploadRefused, UploadTarget

MAX_FIELDS = 20
MAX_FIELD_BYTES = 8 * 1024          # a policy is a few hundred bytes
FORM_OVERHEAD_BYTES = 256 * 1024    # fields, part headers and boundaries around the file


class _Parts:
    """python-multipart callbacks that queue ("field", name, value), ("begin", name),
    ("data", bytes) and ("end",) events; field values are collected here, bounded in size."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.fields = 0
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name: str | None = None
        self._value: bytearray | None = None     # the current non-file field's value

    def callbacks(self) -> dict:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_val, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data,
                "on_part_end": self._end}

    def _begin(self) -> None:
        self._disposition, self._name, self._value = b"", None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_val(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise UploadRefused(400, "MalformedPOSTRequest", "a part has no name")
        self._name = options[b"name"].decode("utf-8", "replace")
        if self._name == "file":
            self.events.append(("begin",))
        else:
            self.fields += 1
            if self.fields > MAX_FIELDS:
                raise UploadRefused(400, "MalformedPOSTRequest", f"more than {MAX_FIELDS} form fields")
            self._value = bytearray()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._value is None:
            self.events.append(("data", bytes(data[start:end])))
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise UploadRefused(400, "MalformedPOSTRequest", f"{self._name[:40]}: over {MAX_FIELD_BYTES} bytes")

    def _end(self) -> None:
        if self._value is None:
            self.events.append(("end",))
        else:
            self.events.append(("field", self._name, self._value.decode("utf-8", "replace")))
            self._value = None


async def receive_upload(store: DiskBlobStore, content_type: str | None, body: AsyncIterator[bytes],
                         max_file_bytes: int) -> UploadTarget:
    """Store the form's file as its signed policy allows, or raise UploadRefused (nothing stored).

    ``max_file_bytes`` bounds the body even before the policy is known (the server's media limit);
    the policy's own range is enforced on the file itself."""
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadRefused(415, "PreconditionFailed", "body: must be multipart/form-data with a boundary")
    parts = _Parts()
    parser = MultipartParser(options[b"boundary"], parts.callbacks())
    fields: dict[str, str] = {}
    upload: DiskUpload | None = None
    target: UploadTarget | None = None
    done = False
    seen = 0
    try:
        async for chunk in body:
            seen += len(chunk)
            if seen > max_file_bytes + FORM_OVERHEAD_BYTES:
                raise UploadRefused(400, "EntityTooLarge", f"body: over {max_file_bytes} bytes of file")
            try:
                parser.write(chunk)
            except FormParserError:
                raise UploadRefused(400, "MalformedPOSTRequest", "body: not valid multipart/form-data") from None
            events, parts.events = parts.events, []
            for event in events:
                if done:
                    break                   # S3 ignores whatever follows the file
                if event[0] == "field":
                    fields.setdefault(event[1], event[2])
                elif event[0] == "begin":
                    target = store.verify_upload(fields)
                    upload = store.open_upload(target)
                elif event[0] == "data":
                    await upload.write(event[1])
                else:
                    await upload.commit()
                    done = True
        try:
            parser.finalize()
        except FormParserError:
            raise UploadRefused(400, "MalformedPOSTRequest", "body: not valid multipart/form-data") from None
    except BaseException:
        if upload is not None and not done:
            await upload.abort()
        raise
    if not done:
        if upload is not None:
            await upload.abort()
            raise UploadRefused(400, "IncompleteBody", "file: the body ended inside the file")
        raise UploadRefused(400, "InvalidArgument", "POST requires exactly one file field, after the others")
    return target

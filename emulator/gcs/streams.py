"""Request and file bodies as streams: request bodies read chunk by chunk, file writes with checksums, the parts of
a multipart/related body, a resumable chunk's Content-Range.

Uploads go chunk by chunk to a file under the root (md5 and crc32c computed on the way), then are renamed into
place; downloads are Starlette's FileResponse (which also serves `Range` requests).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

import anyio
import google_crc32c
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser
from starlette.requests import ClientDisconnect

from emulator.errors import InvalidArgument

IO_CHUNK = 1024 * 1024             # bytes per disk write / read
_DRAIN_LIMIT = 256 * 1024 * 1024   # bytes of an unwanted body read and dropped before answering an error
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_PART_EVENTS = ("part_begin", "header_field", "header_value", "header_end", "headers_finished", "part_data", "end")


async def drain(body: AsyncIterator[bytes], limit: int = _DRAIN_LIMIT) -> None:
    """Read and drop what is left of a request body (a `request.stream()`), so that the client sees our answer."""
    dropped = 0
    try:
        async for chunk in body:
            dropped += len(chunk)
            if dropped > limit:
                return
    except (ClientDisconnect, OSError, RuntimeError):   # RuntimeError: the body was read another way
        pass


@dataclass
class Hashes:
    """md5 and crc32c of the first `size` bytes of a file, extended as bytes are appended."""

    size: int = 0
    md5: Any = field(default_factory=hashlib.md5)
    crc: int = 0

    def update(self, data: bytes) -> None:
        self.md5.update(data)
        self.crc = google_crc32c.extend(self.crc, data)
        self.size += len(data)

    def digests(self) -> tuple[str, str]:
        """(md5, crc32c) in base64, as GCS shows them."""
        return tuple(base64.b64encode(raw).decode() for raw in (self.md5.digest(), self.crc.to_bytes(4, "big")))


def hashes_of(path: Path, length: int) -> Hashes:
    """The Hashes of the first `length` bytes of `path` (after a restart or an overlapping chunk)."""
    hashes = Hashes()
    with open(path, "rb") as stream:
        while hashes.size < length:
            data = stream.read(min(IO_CHUNK, length - hashes.size))
            if not data:
                raise InvalidArgument("The upload's stored bytes are shorter than recorded.")
            hashes.update(data)
    return hashes


class Sink:
    """Appends to a file through a 1 MiB buffer, extending its `hashes` on the way (in a thread)."""

    def __init__(self, path: Path, hashes: Hashes | None = None) -> None:
        self.path, self.file, self.hashes = path, open(path, "ab"), hashes or Hashes()
        self.written = 0          # bytes handed to write() (buffered or not)
        self._buffer = bytearray()

    def _write_sync(self, data: bytes) -> None:
        self.file.write(data)
        self.hashes.update(data)

    async def write(self, data: bytes) -> None:
        self._buffer += data
        self.written += len(data)
        if len(self._buffer) >= IO_CHUNK:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            await anyio.to_thread.run_sync(self._write_sync, data)

    async def close(self, sync: bool = True) -> None:
        try:
            await self.flush()
        finally:
            self.file.close()
        if sync:
            await anyio.to_thread.run_sync(fsync_path, self.path)


async def related_parts(chunks: AsyncIterator[bytes], boundary: bytes
                        ) -> AsyncIterator[tuple[int, dict[str, str], bytes]]:
    """(part number from 1, the part's headers, a piece of its body) of a multipart/related body as
    python-multipart's streaming parser reads it (an empty piece first, for empty parts); 400 if malformed."""
    events: list[tuple[str, bytes]] = []
    callbacks = {f"on_{name}": lambda data=b"", start=0, end=0, name=name: events.append((name, data[start:end]))
                 for name in _PART_EVENTS}
    number, headers, field, value = 0, {}, b"", b""
    try:
        parser = MultipartParser(boundary, callbacks)
        async for chunk in chunks:
            parser.write(chunk)
            for event, data in events:
                if event == "part_begin":
                    number, headers = number + 1, {}
                elif event == "header_field":
                    field += data
                elif event == "header_value":
                    value += data
                elif event == "header_end":
                    headers[field.decode("latin-1").lower()] = value.decode("latin-1")
                    field, value = b"", b""
                elif event in ("headers_finished", "part_data"):
                    yield number, headers, data
                elif event == "end":
                    return
            events.clear()
    except FormParserError as error:
        raise InvalidArgument(f"Malformed multipart body: {error}") from None
    raise InvalidArgument("Malformed multipart body: missing the closing boundary.")


def content_range(header: str) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a resumable chunk's `Content-Range`, None where it says `*`; 400 if malformed."""
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise InvalidArgument(f"Invalid Content-Range header {header!r}: expected 'bytes FIRST-LAST/TOTAL', "
                              "'bytes FIRST-LAST/*', 'bytes */TOTAL' or 'bytes */*'.")
    first, last, total = (int(group) if group not in (None, "*") else None for group in match.groups())
    if first is not None and last is not None and last < first:
        raise InvalidArgument(f"Invalid Content-Range header {header!r}: last byte before first byte.")
    return first, last, total


def fsync_path(path: Path) -> None:
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())

"""Request and file bodies as streams: chunked reads and writes, multipart/related parts, checksums.

Bodies are streamed: uploads go chunk by chunk to a temporary file under the root (md5 and crc32c computed on the
way), then are renamed into place; downloads are Starlette's FileResponse (which also answers `Range` requests).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO

import anyio
import google_crc32c
from starlette.requests import ClientDisconnect, Request

from emulator.errors import InvalidArgument

IO_CHUNK = 1024 * 1024             # bytes per disk write / read
_DRAIN_LIMIT = 256 * 1024 * 1024   # bytes of an unwanted body read and dropped before answering an error
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


class Body:
    """A request body read chunk by chunk once; `drain()` drops what is left so the client sees our answer."""

    def __init__(self, request: Request) -> None:
        self._stream = request.stream().__aiter__()
        self._done = False

    async def next(self) -> bytes | None:
        while not self._done:
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._done = True
                return None
            if chunk:
                return chunk
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.next()) is not None:
            yield chunk

    async def drain(self, limit: int = _DRAIN_LIMIT) -> None:
        dropped = 0
        try:
            while dropped <= limit and (chunk := await self.next()) is not None:
                dropped += len(chunk)
        except (ClientDisconnect, OSError, RuntimeError):
            self._done = True


class Sink:
    """Writes to a file at an offset through a 1 MiB buffer, hashing md5 and crc32c on the way (in a thread)."""

    def __init__(self, path: Path, offset: int = 0, md5: Any = None, crc: int = 0, create: bool = True) -> None:
        self.path = path
        self.file: BinaryIO = open(path, "wb" if create else "r+b")
        if offset:
            self.file.seek(offset)
        self.md5 = md5 if md5 is not None else hashlib.md5()
        self.crc = crc
        self.written = 0          # bytes handed to write() (buffered or not)
        self._buffer = bytearray()

    def _write_sync(self, data: bytes) -> None:
        self.file.write(data)
        self.md5.update(data)
        self.crc = google_crc32c.extend(self.crc, data)

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
            if sync:
                await anyio.to_thread.run_sync(self._fsync)
        finally:
            self.file.close()

    def _fsync(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())


class Reader:
    """Buffered reads over a `Body` for the multipart/related parser."""

    def __init__(self, body: Body) -> None:
        self.body = body
        self.buffer = bytearray()

    async def fill(self) -> bool:
        chunk = await self.body.next()
        if chunk is None:
            return False
        self.buffer += chunk
        return True

    async def read_until(self, separator: bytes, limit: int, what: str) -> bytes:
        """Everything before `separator` (consumed), at most `limit` bytes."""
        start = 0
        while True:
            found = self.buffer.find(separator, start)
            if found >= 0:
                data = bytes(self.buffer[:found])
                del self.buffer[:found + len(separator)]
                return data
            if len(self.buffer) > limit:
                raise InvalidArgument(f"Malformed multipart body: {what} is longer than {limit} bytes.")
            start = max(0, len(self.buffer) - len(separator) + 1)
            if not await self.fill():
                raise InvalidArgument(f"Malformed multipart body: unexpected end of body in {what}.")

    async def stream_until(self, separator: bytes) -> AsyncIterator[bytes]:
        """Yield the bytes before `separator` as they arrive (consumes the separator)."""
        keep = len(separator) - 1
        start = 0
        while True:
            found = self.buffer.find(separator, start)
            if found >= 0:
                if found:
                    yield bytes(self.buffer[:found])
                del self.buffer[:found + len(separator)]
                return
            if len(self.buffer) > keep:
                cut = len(self.buffer) - keep
                yield bytes(self.buffer[:cut])
                del self.buffer[:cut]
            start = 0
            if not await self.fill():
                raise InvalidArgument("Malformed multipart body: missing the closing boundary.")


def parse_part_headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return headers


def multipart_boundary(content_type: str) -> bytes:
    """The boundary of a `multipart/related` body; 400 for any other Content-Type."""
    match = _BOUNDARY.search(content_type)
    if not content_type.lower().startswith("multipart/related") or match is None:
        raise InvalidArgument("uploadType=multipart needs Content-Type: multipart/related; boundary=...")
    return (match.group(1) or match.group(2)).encode("latin-1")


def parse_content_range(header: str) -> tuple[int | None, int | None, int | None]:
    """(first, last, total) of a resumable chunk's `Content-Range`, None where it says `*`; 400 if malformed."""
    match = _CONTENT_RANGE.match(header.strip())
    if match is None:
        raise InvalidArgument(f"Invalid Content-Range header {header!r}: expected 'bytes FIRST-LAST/TOTAL', "
                              "'bytes FIRST-LAST/*', 'bytes */TOTAL' or 'bytes */*'.")
    first = int(match.group(1)) if match.group(1) is not None else None
    last = int(match.group(2)) if match.group(2) is not None else None
    total = int(match.group(3)) if match.group(3) != "*" else None
    if first is not None and last is not None and last < first:
        raise InvalidArgument(f"Invalid Content-Range header {header!r}: last byte before first byte.")
    return first, last, total


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def crc32c_b64(value: int) -> str:
    return b64(value.to_bytes(4, "big"))


def fsync_path(path: Path) -> None:
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())

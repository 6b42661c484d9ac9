"""Request and file bodies as streams: chunked reads and writes, multipart/related parts (python-multipart's
streaming parser), checksums.

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
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser
from starlette.requests import ClientDisconnect, Request

from emulator.errors import InvalidArgument

IO_CHUNK = 1024 * 1024             # bytes per disk write / read
_DRAIN_LIMIT = 256 * 1024 * 1024   # bytes of an unwanted body read and dropped before answering an error
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_PART_EVENTS = ("part_begin", "header_field", "header_value", "header_end", "headers_finished", "part_data", "end")


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

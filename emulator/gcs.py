"""The Cloud Storage JSON API subset that google-cloud-storage uses, with metadata in SQLite and bytes on disk.

Routes (JSON API v1; `{object=**}` is the URL-encoded object name, re-read from the raw request path):

    POST   /storage/v1/b?project=                         buckets.insert
    GET    /storage/v1/b?project=&prefix=&maxResults=&pageToken=   buckets.list
    GET    /storage/v1/b/{bucket}                         buckets.get
    PATCH  /storage/v1/b/{bucket}  (PUT: update)          buckets.patch (labels and other writable fields)
    DELETE /storage/v1/b/{bucket}                         buckets.delete (409 while it holds objects)
    POST   /upload/storage/v1/b/{bucket}/o?uploadType=multipart|media|resumable   objects.insert
    PUT    /upload/storage/v1/b/{bucket}/o?upload_id=     resumable chunks (`Content-Range`, 308 + `Range`)
    DELETE /upload/storage/v1/b/{bucket}/o?upload_id=     cancel a resumable upload (499)
    GET    /storage/v1/b/{bucket}/o?prefix=&delimiter=&maxResults=&pageToken=&startOffset=&endOffset=
    GET    /storage/v1/b/{bucket}/o/{object=**}           objects.get (metadata, or the bytes with alt=media)
    GET    /download/storage/v1/b/{bucket}/o/{object=**}  media download (honours `Range`)
    PATCH  /storage/v1/b/{bucket}/o/{object=**}  (PUT: update)   objects.patch
    DELETE /storage/v1/b/{bucket}/o/{object=**}           objects.delete

Bodies are streamed: uploads go chunk by chunk to a temporary file under the root (md5 and crc32c computed on the
way), then are renamed into place; downloads are read from disk in chunks. Object files live at
`root/blobs/<sha256(bucket, name)[:2]>/<sha256>-<generation>`, never at a path built from the object name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO, Iterator
from urllib.parse import quote, unquote_to_bytes

import anyio
import google_crc32c
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from emulator.db import Database
from emulator.errors import AlreadyExists, GoogleApiError, InvalidArgument, NotFound, PayloadTooLarge, Unimplemented
from emulator.requests import read_json
from emulator.routing import Route

# ---------------------------------------------------------------------------------------------------------------
# Errors specific to Cloud Storage


class PreconditionFailed(GoogleApiError):
    """412: an `ifGenerationMatch`-style precondition did not hold."""

    http_status, status = 412, "FAILED_PRECONDITION"


class BucketNotEmpty(GoogleApiError):
    """409: buckets.delete on a bucket that still holds objects."""

    http_status, status = 409, "FAILED_PRECONDITION"


class RangeNotSatisfiable(GoogleApiError):
    http_status, status = 416, "OUT_OF_RANGE"


class UploadCancelled(GoogleApiError):
    http_status, status = 499, "CANCELLED"


_PRECONDITION_MESSAGE = "At least one of the pre-conditions you specified did not hold."

# ---------------------------------------------------------------------------------------------------------------
# Schema

SCHEMA = """
CREATE TABLE IF NOT EXISTS gcs_buckets (
    name            TEXT PRIMARY KEY,
    project         TEXT NOT NULL,
    location        TEXT NOT NULL,
    storage_class   TEXT NOT NULL,
    labels          TEXT NOT NULL DEFAULT '{}',
    extra           TEXT NOT NULL DEFAULT '{}',
    metageneration  INTEGER NOT NULL DEFAULT 1,
    time_created    TEXT NOT NULL,
    updated         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS gcs_buckets_by_project ON gcs_buckets (project, name);
CREATE TABLE IF NOT EXISTS gcs_objects (
    bucket          TEXT NOT NULL REFERENCES gcs_buckets (name),
    name            TEXT NOT NULL,
    generation      INTEGER NOT NULL,
    metageneration  INTEGER NOT NULL DEFAULT 1,
    content_type    TEXT NOT NULL,
    size            INTEGER NOT NULL,
    md5_hash        TEXT NOT NULL,
    crc32c          TEXT NOT NULL,
    storage_class   TEXT NOT NULL,
    extra           TEXT NOT NULL DEFAULT '{}',
    blob_path       TEXT NOT NULL,
    time_created    TEXT NOT NULL,
    updated         TEXT NOT NULL,
    PRIMARY KEY (bucket, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gcs_uploads (
    upload_id         TEXT PRIMARY KEY,
    bucket            TEXT NOT NULL,
    name              TEXT NOT NULL,
    resource          TEXT NOT NULL,
    content_type      TEXT NOT NULL,
    total_size        INTEGER,
    received          INTEGER NOT NULL DEFAULT 0,
    preconditions     TEXT NOT NULL DEFAULT '{}',
    result_generation INTEGER,
    created           TEXT NOT NULL
);
"""

# ---------------------------------------------------------------------------------------------------------------
# Validation and small helpers

_IO_CHUNK = 1024 * 1024            # bytes per disk write / read
_MAX_METADATA_BYTES = 1024 * 1024  # JSON metadata of an upload, buckets.insert bodies
_MAX_PAGE = 1000
_DRAIN_LIMIT = 256 * 1024 * 1024   # bytes of an unwanted body read and dropped before answering an error
_BUCKET_CHARS = re.compile(r"^[a-z0-9_.-]+$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_OBJECT_PATH = re.compile(rb"^/(?:download/)?storage/v1/b/([^/]+)/o/(.+)$")
_CONTENT_RANGE = re.compile(r"^bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_BOUNDARY = re.compile(r'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)

_BUCKET_WRITABLE = ("versioning", "lifecycle", "cors", "website", "logging", "defaultEventBasedHold",
                    "retentionPolicy", "encryption", "billing", "autoclass", "softDeletePolicy",
                    "hierarchicalNamespace", "iamConfiguration", "rpo", "customPlacementConfig")
_OBJECT_WRITABLE = ("cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "customTime",
                    "metadata", "temporaryHold", "eventBasedHold")
_MULTI_REGIONS = {"US", "EU", "ASIA"}
_DUAL_REGIONS = {"NAM4", "EUR4", "ASIA1", "EUR5", "EUR7", "EUR8"}


def validate_bucket_name(name: str) -> None:
    """Cloud Storage bucket naming rules; 400 INVALID_ARGUMENT naming the rule that is broken."""

    def bad(rule: str) -> InvalidArgument:
        return InvalidArgument(f"Invalid bucket name: '{name}'. {rule}")

    if not _BUCKET_CHARS.match(name):
        raise bad("Bucket names must contain only lowercase letters, numeric characters, dashes (-), "
                  "underscores (_), and dots (.).")
    if not (name[0].isalnum() and name[-1].isalnum()):
        raise bad("Bucket names must start and end with a number or letter.")
    if "." in name:
        if not 3 <= len(name) <= 222:
            raise bad("Bucket names containing dots must contain 3-222 characters.")
        if any(not 1 <= len(part) <= 63 for part in name.split(".")):
            raise bad("Each dot-separated component of a bucket name must contain 1-63 characters.")
        if _IPV4.match(name):
            raise bad("Bucket names cannot be represented as an IP address in dotted-decimal notation.")
    elif not 3 <= len(name) <= 63:
        raise bad("Bucket names must contain 3-63 characters.")
    if name.startswith("goog"):
        raise bad('Bucket names cannot begin with the "goog" prefix.')
    if "google" in name or "g00gle" in name:
        raise bad('Bucket names cannot contain "google" or close misspellings, such as "g00gle".')


def validate_object_name(name: str) -> None:
    """Cloud Storage object naming rules (1-1024 bytes of UTF-8, no CR/LF, not `.` or `..`)."""
    if not name:
        raise InvalidArgument("Required: object name.")
    if len(name.encode("utf-8", "surrogatepass")) > 1024:
        raise InvalidArgument("Object names must contain 1-1024 bytes when UTF-8 encoded.")
    if "\r" in name or "\n" in name:
        raise InvalidArgument("Object names cannot contain Carriage Return or Line Feed characters.")
    if name in (".", ".."):
        raise InvalidArgument("Object names cannot be named . or ...")
    if name.startswith(".well-known/acme-challenge/"):
        raise InvalidArgument("Object names cannot start with .well-known/acme-challenge/.")


def _now() -> tuple[int, str]:
    """(microseconds since the epoch, RFC 3339 timestamp with milliseconds)."""
    micros = time.time_ns() // 1000
    stamp = datetime.fromtimestamp(micros / 1e6, tz=timezone.utc)
    return micros, stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _etag(*numbers: int) -> str:
    """Like GCS: base64 of a small protobuf (field 1, 2, ... as varints)."""
    raw = b"".join(bytes([(index << 3) | 0]) + _varint(number) for index, number in enumerate(numbers, start=1))
    return base64.b64encode(raw).decode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _crc32c_b64(value: int) -> str:
    return _b64(value.to_bytes(4, "big"))


def _project_number(project: str) -> str:
    if project.isdigit():
        return project
    return str(int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big") % 10**12)


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"Invalid value for {name}: {raw!r} is not an integer.") from None


def _preconditions(request: Request) -> dict[str, int]:
    names = ("ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch")
    return {name: value for name in names if (value := _int_param(request, name)) is not None}


def _check_preconditions(current: sqlite3.Row | None, conditions: dict[str, int], read: bool = False) -> None:
    """412 when a precondition fails (304 for the *NotMatch ones on reads, as GCS does)."""
    generation = current["generation"] if current is not None else 0
    metageneration = current["metageneration"] if current is not None else None
    if "ifGenerationMatch" in conditions and conditions["ifGenerationMatch"] != generation:
        raise PreconditionFailed(_PRECONDITION_MESSAGE)
    if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != metageneration:
        raise PreconditionFailed(_PRECONDITION_MESSAGE)
    not_match = (("ifGenerationNotMatch" in conditions and conditions["ifGenerationNotMatch"] == generation)
                 or ("ifMetagenerationNotMatch" in conditions
                     and conditions["ifMetagenerationNotMatch"] == metageneration))
    if not_match:
        if read:
            raise _NotModified()
        raise PreconditionFailed(_PRECONDITION_MESSAGE)


class _NotModified(GoogleApiError):
    http_status, status = 304, "OK"

    def __init__(self) -> None:
        super().__init__("Not Modified")

    def to_response(self) -> Response:  # type: ignore[override]
        return Response(status_code=304)


def _encode_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def _decode_token(token: str | None) -> dict[str, Any] | None:
    if not token:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        if isinstance(payload, dict):
            return payload
    except ValueError:
        pass
    raise InvalidArgument(f"Invalid pageToken: {token!r}.")


def _max_results(request: Request) -> int:
    value = _int_param(request, "maxResults")
    if value is None:
        return _MAX_PAGE
    if value < 1:
        raise InvalidArgument("maxResults must be a positive integer.")
    return min(value, _MAX_PAGE)


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None if there is none)."""
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return None
    following = 0xE000 if last == 0xD7FF else last + 1
    return prefix[:-1] + chr(following)


# ---------------------------------------------------------------------------------------------------------------
# Streaming I/O


class _Body:
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

    async def read_json(self, limit: int) -> dict[str, Any]:
        """The whole (small) body as a JSON object; `{}` when empty."""
        data = bytearray()
        while (chunk := await self.next()) is not None:
            data += chunk
            if len(data) > limit:
                raise PayloadTooLarge(f"Request body exceeds the limit of {limit} bytes.")
        if not data.strip():
            return {}
        try:
            value = json.loads(bytes(data))
        except ValueError as error:
            raise InvalidArgument(f"Invalid JSON payload received. {error}") from error
        if not isinstance(value, dict):
            raise InvalidArgument("Invalid JSON payload received. Expected an object.")
        return value


class _Sink:
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
        if len(self._buffer) >= _IO_CHUNK:
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


class _Reader:
    """Buffered reads over a `_Body` for the multipart/related parser."""

    def __init__(self, body: _Body) -> None:
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


def _parse_part_headers(raw: bytes) -> dict[str, str]:
    headers = {}
    for line in raw.decode("latin-1").split("\r\n"):
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return headers


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive for a single `bytes=` range, None for the whole object; 416 if unsatisfiable."""
    if not header or size == 0:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None or match.group(1) == match.group(2) == "":
        return None   # multiple or malformed ranges: ignore the header and send everything, as RFC 9110 allows
    first_raw, last_raw = match.groups()
    if first_raw == "":
        suffix = int(last_raw)
        if suffix == 0:
            raise RangeNotSatisfiable(f"Request range not satisfiable: {header}")
        return max(0, size - suffix), size - 1
    first = int(first_raw)
    last = min(int(last_raw), size - 1) if last_raw else size - 1
    if first >= size or first > last:
        raise RangeNotSatisfiable(f"Request range not satisfiable: {header}")
    return first, last


# ---------------------------------------------------------------------------------------------------------------
# The store


@dataclass
class _HashState:
    offset: int
    md5: Any
    crc: int


@dataclass
class _Upload:
    """A resumable upload session (row of gcs_uploads)."""

    upload_id: str
    bucket: str
    name: str
    resource: dict[str, Any]
    content_type: str
    total_size: int | None
    received: int
    preconditions: dict[str, int]
    result_generation: int | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "_Upload":
        return cls(row["upload_id"], row["bucket"], row["name"], json.loads(row["resource"]), row["content_type"],
                   row["total_size"], row["received"], json.loads(row["preconditions"]), row["result_generation"])


@dataclass
class _NewObject:
    bucket: str
    name: str
    content_type: str
    fields: dict[str, Any] = field(default_factory=dict)
    preconditions: dict[str, int] = field(default_factory=dict)
    expected_md5: str | None = None
    expected_crc32c: str | None = None


class ObjectStore:
    """Buckets and objects: metadata rows in SQLite, object bytes in files under `root`."""

    def __init__(self, db: Database, root: Path, max_upload_bytes: int, project: str = "local-project") -> None:
        self.db = db
        self.root = Path(root).resolve()
        self.max_upload_bytes = max_upload_bytes
        self.project = project
        self.base_url = "https://storage.googleapis.com"   # updated from each request; used in selfLink/mediaLink
        db.ensure_schema(SCHEMA)
        self._hash_states: dict[str, _HashState] = {}
        self._upload_locks: dict[str, asyncio.Lock] = {}
        self._make_dirs()
        shutil.rmtree(self._tmp_dir, ignore_errors=True)   # half-written uploads of a previous run
        self._tmp_dir.mkdir(parents=True, exist_ok=True)

    # -- layout -----------------------------------------------------------------------------------------------

    @property
    def _blob_dir(self) -> Path:
        return self.root / "blobs"

    @property
    def _tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def _upload_dir(self) -> Path:
        return self.root / "uploads"

    def _make_dirs(self) -> None:
        for directory in (self._blob_dir, self._tmp_dir, self._upload_dir):
            directory.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _blob_relpath(bucket: str, name: str, generation: int) -> str:
        digest = hashlib.sha256(bucket.encode() + b"\0" + name.encode("utf-8", "surrogatepass")).hexdigest()
        return f"blobs/{digest[:2]}/{digest}-{generation}"

    def _upload_path(self, upload_id: str) -> Path:
        return self._upload_dir / hashlib.sha256(upload_id.encode()).hexdigest()

    def _temp_path(self) -> Path:
        return self._tmp_dir / uuid.uuid4().hex

    # -- public helpers (used by the Vertex side) -------------------------------------------------------------

    @staticmethod
    def parse_gs_uri(uri: str) -> tuple[str, str]:
        """`gs://bucket/path/to/object` -> (bucket, object); 400 for anything else."""
        if not isinstance(uri, str) or not uri.startswith("gs://"):
            raise InvalidArgument(f"Invalid Cloud Storage URI {uri!r}: expected gs://BUCKET/OBJECT.")
        bucket, _, name = uri[len("gs://"):].partition("/")
        if not bucket or not name:
            raise InvalidArgument(f"Invalid Cloud Storage URI {uri!r}: expected gs://BUCKET/OBJECT.")
        validate_bucket_name(bucket)
        validate_object_name(name)
        return bucket, name

    def bucket_exists(self, bucket: str) -> bool:
        return self.db.query_one("SELECT 1 FROM gcs_buckets WHERE name = ?", (bucket,)) is not None

    def open_object(self, bucket: str, name: str) -> BinaryIO:
        """The live object's bytes, opened for reading (404 NotFound if there is no such object)."""
        for _attempt in range(3):
            row = self._object_row(bucket, name)
            try:
                return open(self.root / row["blob_path"], "rb")
            except FileNotFoundError:
                continue   # overwritten between the lookup and the open: look again
        raise NotFound(f"No such object: {bucket}/{name}")

    def object_metadata(self, bucket: str, name: str, base_url: str | None = None) -> dict[str, Any]:
        return self._object_resource(self._object_row(bucket, name), base_url)

    def reset(self) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gcs_uploads")
            conn.execute("DELETE FROM gcs_objects")
            conn.execute("DELETE FROM gcs_buckets")
        self._hash_states.clear()
        for directory in (self._blob_dir, self._tmp_dir, self._upload_dir):
            shutil.rmtree(directory, ignore_errors=True)
        self._make_dirs()

    # -- rows and resources -----------------------------------------------------------------------------------

    def _bucket_row(self, bucket: str) -> sqlite3.Row:
        row = self.db.query_one("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,))
        if row is None:
            raise NotFound("The specified bucket does not exist.")
        return row

    def _object_row(self, bucket: str, name: str) -> sqlite3.Row:
        row = self.db.query_one("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))
        if row is None:
            if not self.bucket_exists(bucket):
                raise NotFound("The specified bucket does not exist.")
            raise NotFound(f"No such object: {bucket}/{name}")
        return row

    def _bucket_resource(self, row: sqlite3.Row, base_url: str | None = None) -> dict[str, Any]:
        base = base_url or self.base_url
        location = row["location"]
        location_type = ("multi-region" if location in _MULTI_REGIONS
                         else "dual-region" if location in _DUAL_REGIONS else "region")
        resource: dict[str, Any] = {
            "kind": "storage#bucket",
            "selfLink": f"{base}/storage/v1/b/{row['name']}",
            "id": row["name"],
            "name": row["name"],
            "projectNumber": _project_number(row["project"]),
            "metageneration": str(row["metageneration"]),
            "location": location,
            "storageClass": row["storage_class"],
            "etag": _etag(row["metageneration"]),
            "timeCreated": row["time_created"],
            "updated": row["updated"],
            "iamConfiguration": {
                "bucketPolicyOnly": {"enabled": False},
                "uniformBucketLevelAccess": {"enabled": False},
                "publicAccessPrevention": "inherited",
            },
            "locationType": location_type,
            "rpo": "DEFAULT",
        }
        resource.update(json.loads(row["extra"]))
        labels = json.loads(row["labels"])
        if labels:
            resource["labels"] = labels
        return resource

    def _object_resource(self, row: sqlite3.Row, base_url: str | None = None) -> dict[str, Any]:
        base = base_url or self.base_url
        bucket, name, generation = row["bucket"], row["name"], row["generation"]
        encoded = quote(name, safe="~")
        resource: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{generation}",
            "selfLink": f"{base}/storage/v1/b/{bucket}/o/{encoded}",
            "mediaLink": f"{base}/download/storage/v1/b/{bucket}/o/{encoded}?generation={generation}&alt=media",
            "name": name,
            "bucket": bucket,
            "generation": str(generation),
            "metageneration": str(row["metageneration"]),
            "contentType": row["content_type"],
            "storageClass": row["storage_class"],
            "size": str(row["size"]),
            "md5Hash": row["md5_hash"],
            "crc32c": row["crc32c"],
            "etag": _etag(generation, row["metageneration"]),
            "timeCreated": row["time_created"],
            "updated": row["updated"],
            "timeStorageClassUpdated": row["time_created"],
            "timeFinalized": row["time_created"],
        }
        for key, value in json.loads(row["extra"]).items():
            if value is not None and value != {}:
                resource[key] = value
        return resource

    # -- buckets ----------------------------------------------------------------------------------------------

    def create_bucket(self, project: str, body: dict[str, Any]) -> sqlite3.Row:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("Required: bucket name.")
        validate_bucket_name(name)
        labels = body.get("labels") or {}
        if not isinstance(labels, dict):
            raise InvalidArgument("Invalid value for labels: expected an object.")
        location = str(body.get("location") or "US").upper()
        storage_class = str(body.get("storageClass") or "STANDARD").upper()
        extra = {key: body[key] for key in _BUCKET_WRITABLE if key in body}
        _micros, stamp = _now()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM gcs_buckets WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists("Your previous request to create the named bucket succeeded and you already own it.")
            conn.execute("INSERT INTO gcs_buckets (name, project, location, storage_class, labels, extra, "
                         "metageneration, time_created, updated) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                         (name, project, location, storage_class, json.dumps(labels), json.dumps(extra),
                          stamp, stamp))
        return self._bucket_row(name)

    def patch_bucket(self, bucket: str, body: dict[str, Any], replace: bool,
                     conditions: dict[str, int]) -> sqlite3.Row:
        _micros, stamp = _now()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,)).fetchone()
            if row is None:
                raise NotFound("The specified bucket does not exist.")
            self._check_bucket_conditions(row, conditions)
            labels = {} if replace else json.loads(row["labels"])
            if "labels" in body:
                if body["labels"] is not None and not isinstance(body["labels"], dict):
                    raise InvalidArgument("Invalid value for labels: expected an object.")
                for key, value in (body["labels"] or {}).items():
                    if value is None:
                        labels.pop(key, None)
                    else:
                        labels[key] = str(value)
            extra = {} if replace else json.loads(row["extra"])
            for key in _BUCKET_WRITABLE:
                if key in body:
                    if body[key] is None:
                        extra.pop(key, None)
                    else:
                        extra[key] = body[key]
            storage_class = str(body.get("storageClass") or row["storage_class"]).upper()
            conn.execute("UPDATE gcs_buckets SET labels = ?, extra = ?, storage_class = ?, "
                         "metageneration = metageneration + 1, updated = ? WHERE name = ?",
                         (json.dumps(labels), json.dumps(extra), storage_class, stamp, bucket))
        return self._bucket_row(bucket)

    @staticmethod
    def _check_bucket_conditions(row: sqlite3.Row, conditions: dict[str, int]) -> None:
        if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != row["metageneration"]:
            raise PreconditionFailed(_PRECONDITION_MESSAGE)
        if ("ifMetagenerationNotMatch" in conditions
                and conditions["ifMetagenerationNotMatch"] == row["metageneration"]):
            raise PreconditionFailed(_PRECONDITION_MESSAGE)

    def delete_bucket(self, bucket: str, conditions: dict[str, int]) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,)).fetchone()
            if row is None:
                raise NotFound("The specified bucket does not exist.")
            self._check_bucket_conditions(row, conditions)
            if conn.execute("SELECT 1 FROM gcs_objects WHERE bucket = ? LIMIT 1", (bucket,)).fetchone():
                raise BucketNotEmpty("The bucket you tried to delete is not empty.")
            uploads = [r["upload_id"] for r in
                       conn.execute("SELECT upload_id FROM gcs_uploads WHERE bucket = ?", (bucket,))]
            conn.execute("DELETE FROM gcs_uploads WHERE bucket = ?", (bucket,))
            conn.execute("DELETE FROM gcs_buckets WHERE name = ?", (bucket,))
        for upload_id in uploads:
            self._forget_upload_file(upload_id)

    def list_buckets(self, project: str, prefix: str, limit: int, after: str | None) -> tuple[list[sqlite3.Row], str | None]:
        rows = self.db.query(
            "SELECT * FROM gcs_buckets WHERE project = ? AND name > ? AND substr(name, 1, ?) = ? "
            "ORDER BY name LIMIT ?", (project, after or "", len(prefix), prefix, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (rows[-1]["name"] if more else None)

    # -- objects: commit, delete, patch, list ------------------------------------------------------------------

    def _commit(self, new: _NewObject, temp: Path, size: int, md5_b64: str, crc_b64: str) -> sqlite3.Row:
        """Move `temp` into place as the new live generation (checks preconditions again, atomically)."""
        if new.expected_md5 is not None and new.expected_md5 != md5_b64:
            raise InvalidArgument(f"Provided MD5 hash \"{new.expected_md5}\" doesn't match calculated MD5 hash "
                                  f"\"{md5_b64}\".")
        if new.expected_crc32c is not None and new.expected_crc32c != crc_b64:
            raise InvalidArgument(f"Provided CRC32C \"{new.expected_crc32c}\" doesn't match calculated CRC32C "
                                  f"\"{crc_b64}\".")
        micros, stamp = _now()
        old_path: str | None = None
        with self.db.transaction() as conn:
            bucket_row = conn.execute("SELECT storage_class FROM gcs_buckets WHERE name = ?",
                                      (new.bucket,)).fetchone()
            if bucket_row is None:
                raise NotFound("The specified bucket does not exist.")
            current = conn.execute("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?",
                                   (new.bucket, new.name)).fetchone()
            _check_preconditions(current, new.preconditions)
            generation = max(micros, current["generation"] + 1 if current is not None else 0)
            relpath = self._blob_relpath(new.bucket, new.name, generation)
            target = self.root / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temp, target)
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO gcs_objects (bucket, name, generation, metageneration, content_type, "
                    "size, md5_hash, crc32c, storage_class, extra, blob_path, time_created, updated) "
                    "VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (new.bucket, new.name, generation, new.content_type, size, md5_b64, crc_b64,
                     str(new.fields.pop("storageClass", None) or bucket_row["storage_class"]),
                     json.dumps(new.fields), relpath, stamp, stamp))
            except BaseException:
                target.unlink(missing_ok=True)
                raise
            if current is not None:
                old_path = current["blob_path"]
        if old_path is not None and old_path != relpath:
            (self.root / old_path).unlink(missing_ok=True)
        return self._object_row(new.bucket, new.name)

    def delete_object(self, bucket: str, name: str, generation: int | None, conditions: dict[str, int]) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name)).fetchone()
            if row is None or (generation is not None and row["generation"] != generation):
                if conn.execute("SELECT 1 FROM gcs_buckets WHERE name = ?", (bucket,)).fetchone() is None:
                    raise NotFound("The specified bucket does not exist.")
                raise NotFound(f"No such object: {bucket}/{name}")
            _check_preconditions(row, conditions)
            conn.execute("DELETE FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))
        (self.root / row["blob_path"]).unlink(missing_ok=True)

    def patch_object(self, bucket: str, name: str, body: dict[str, Any], replace: bool,
                     generation: int | None, conditions: dict[str, int]) -> sqlite3.Row:
        _micros, stamp = _now()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name)).fetchone()
            if row is None or (generation is not None and row["generation"] != generation):
                raise NotFound(f"No such object: {bucket}/{name}")
            _check_preconditions(row, conditions)
            extra = {} if replace else json.loads(row["extra"])
            for key in _OBJECT_WRITABLE:
                if key not in body:
                    continue
                value = body[key]
                if key == "metadata" and value is not None:
                    if not isinstance(value, dict):
                        raise InvalidArgument("Invalid value for metadata: expected an object.")
                    merged = {} if replace else dict(extra.get("metadata") or {})
                    for meta_key, meta_value in value.items():
                        if meta_value is None:
                            merged.pop(meta_key, None)
                        else:
                            merged[meta_key] = str(meta_value)
                    value = merged or None
                if value is None:
                    extra.pop(key, None)
                else:
                    extra[key] = value
            content_type = body.get("contentType") or (None if replace else row["content_type"])
            conn.execute("UPDATE gcs_objects SET extra = ?, content_type = ?, metageneration = metageneration + 1, "
                         "updated = ? WHERE bucket = ? AND name = ?",
                         (json.dumps(extra), content_type or "application/octet-stream", stamp, bucket, name))
        return self._object_row(bucket, name)

    def iter_entries(self, bucket: str, prefix: str, delimiter: str, start_offset: str, end_offset: str,
                     include_trailing: bool, after: str | None, after_is_prefix: bool
                     ) -> Iterator[tuple[str, Any]]:
        """("item", row) and ("prefix", "a/b/") in name order, as objects.list returns them."""
        lower, inclusive = max(prefix, start_offset), True
        skip: str | None = None
        if after is not None:
            if after_is_prefix:
                successor = _successor(after)
                if successor is None:
                    skip = after
                    candidate, candidate_inclusive = after, False
                else:
                    candidate, candidate_inclusive = successor, True
            else:
                candidate, candidate_inclusive = after, False
            if candidate > lower or (candidate == lower and not candidate_inclusive):
                lower, inclusive = candidate, candidate_inclusive
        batch = 500
        while True:
            op = ">=" if inclusive else ">"
            rows = self.db.query(f"SELECT * FROM gcs_objects WHERE bucket = ? AND name {op} ? ORDER BY name LIMIT ?",
                                 (bucket, lower, batch))
            if not rows:
                return
            jumped = False
            for row in rows:
                name = row["name"]
                if not name.startswith(prefix) or (end_offset and name >= end_offset):
                    return
                lower, inclusive = name, False
                if skip is not None and name.startswith(skip):
                    continue
                if delimiter:
                    rest = name[len(prefix):]
                    index = rest.find(delimiter)
                    if index >= 0:
                        common = prefix + rest[:index + len(delimiter)]
                        if include_trailing and common == name:
                            yield "item", row
                        yield "prefix", common
                        successor = _successor(common)
                        if successor is None:
                            skip = common
                        else:
                            lower, inclusive, jumped = successor, True, True
                            break
                        continue
                yield "item", row
            if not jumped and len(rows) < batch:
                return

    # -- resumable sessions -----------------------------------------------------------------------------------

    def _load_upload(self, upload_id: str, bucket: str) -> _Upload:
        row = self.db.query_one("SELECT * FROM gcs_uploads WHERE upload_id = ? AND bucket = ?", (upload_id, bucket))
        if row is None:
            raise NotFound(f"No such upload: {upload_id}")
        return _Upload.from_row(row)

    def _forget_upload_file(self, upload_id: str) -> None:
        self._hash_states.pop(upload_id, None)
        self._upload_locks.pop(upload_id, None)
        self._upload_path(upload_id).unlink(missing_ok=True)

    def _drop_upload(self, upload_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gcs_uploads WHERE upload_id = ?", (upload_id,))
        self._forget_upload_file(upload_id)

    def _rehash(self, path: Path, length: int) -> _HashState:
        """md5 and crc32c of the first `length` bytes of `path` (after a restart or an overlapping chunk)."""
        md5, crc, left = hashlib.md5(), 0, length
        with open(path, "rb") as stream:
            while left > 0:
                data = stream.read(min(_IO_CHUNK, left))
                if not data:
                    raise InvalidArgument("The upload's stored bytes are shorter than recorded.")
                md5.update(data)
                crc = google_crc32c.extend(crc, data)
                left -= len(data)
        return _HashState(length, md5, crc)


# ---------------------------------------------------------------------------------------------------------------
# HTTP handlers


def _object_name_from(request: Request, param: str) -> str:
    """The object name exactly as the client encoded it (scope["path"] is already percent-decoded)."""
    raw = request.scope.get("raw_path")
    if raw:
        match = _OBJECT_PATH.match(raw.split(b"?", 1)[0])
        if match:
            try:
                return unquote_to_bytes(match.group(2)).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument("Object names must be valid UTF-8.") from None
    return param.replace("%3F", "?").replace("%23", "#").replace("%5C", "\\")


def _json(payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=headers)


def gcs_routes(store: ObjectStore) -> list[Route]:
    """The GCS JSON API routes served from `store`."""

    def base_of(request: Request) -> str:
        base = str(request.base_url).rstrip("/")
        store.base_url = base
        return base

    # -- buckets ----------------------------------------------------------------------------------------------

    async def insert_bucket(request: Request) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        project = request.query_params.get("project") or store.project
        row = store.create_bucket(project, body)
        return _json(store._bucket_resource(row, base_of(request)))

    async def list_buckets(request: Request) -> Response:
        project = request.query_params.get("project") or store.project
        token = _decode_token(request.query_params.get("pageToken"))
        rows, last = store.list_buckets(project, request.query_params.get("prefix", ""), _max_results(request),
                                        token.get("after") if token else None)
        base = base_of(request)
        payload: dict[str, Any] = {"kind": "storage#buckets"}
        if rows:
            payload["items"] = [store._bucket_resource(row, base) for row in rows]
        if last is not None:
            payload["nextPageToken"] = _encode_token({"after": last})
        return _json(payload)

    async def get_bucket(request: Request, bucket: str) -> Response:
        row = store._bucket_row(bucket)
        conditions = _preconditions(request)
        if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != row["metageneration"]:
            raise PreconditionFailed(_PRECONDITION_MESSAGE)
        if conditions.get("ifMetagenerationNotMatch") == row["metageneration"]:
            raise _NotModified()
        return _json(store._bucket_resource(row, base_of(request)))

    async def patch_bucket(request: Request, bucket: str) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        row = store.patch_bucket(bucket, body, request.method == "PUT", _preconditions(request))
        return _json(store._bucket_resource(row, base_of(request)))

    async def delete_bucket(request: Request, bucket: str) -> Response:
        store.delete_bucket(bucket, _preconditions(request))
        return Response(status_code=204)

    # -- objects: metadata, list, delete, patch -----------------------------------------------------------------

    def live_row(request: Request, bucket: str, name: str) -> sqlite3.Row:
        row = store._object_row(bucket, name)
        generation = _int_param(request, "generation")
        if generation is not None and generation != row["generation"]:
            raise NotFound(f"No such object: {bucket}/{name}#{generation}")
        _check_preconditions(row, _preconditions(request), read=True)
        return row

    async def get_object(request: Request, bucket: str, object: str) -> Response:
        name = _object_name_from(request, object)
        if request.query_params.get("alt") == "media":
            return await media(request, bucket, name)
        return _json(store._object_resource(live_row(request, bucket, name), base_of(request)))

    async def download_object(request: Request, bucket: str, object: str) -> Response:
        alt = request.query_params.get("alt", "media")
        if alt != "media":
            raise InvalidArgument(f"Invalid value for alt: {alt!r}; downloads need alt=media.")
        return await media(request, bucket, _object_name_from(request, object))

    async def media(request: Request, bucket: str, name: str) -> Response:
        for _attempt in range(3):
            row = live_row(request, bucket, name)
            try:
                stream = open(store.root / row["blob_path"], "rb")
                break
            except FileNotFoundError:
                continue   # replaced by a newer generation meanwhile
        else:
            raise NotFound(f"No such object: {bucket}/{name}")
        size = row["size"]
        try:
            byte_range = _parse_range(request.headers.get("range"), size)
        except RangeNotSatisfiable as error:
            stream.close()
            response = error.to_response()
            response.headers["content-range"] = f"bytes */{size}"
            return response
        extra = json.loads(row["extra"])
        headers = {
            "content-type": row["content_type"],
            "accept-ranges": "bytes",
            "etag": _etag(row["generation"], row["metageneration"]),
            "x-goog-generation": str(row["generation"]),
            "x-goog-metageneration": str(row["metageneration"]),
            "x-goog-hash": f"crc32c={row['crc32c']},md5={row['md5_hash']}",
            "x-goog-stored-content-length": str(size),
            "x-goog-stored-content-encoding": extra.get("contentEncoding") or "identity",
            "x-goog-storage-class": row["storage_class"],
        }
        for key, header in (("cacheControl", "cache-control"), ("contentDisposition", "content-disposition"),
                            ("contentLanguage", "content-language"), ("contentEncoding", "content-encoding")):
            if extra.get(key):
                headers[header] = str(extra[key])
        status = 200
        first, last = 0, size - 1
        if byte_range is not None:
            first, last = byte_range
            status = 206
            headers["content-range"] = f"bytes {first}-{last}/{size}"
        headers["content-length"] = str(last - first + 1)
        return StreamingResponse(_file_chunks(stream, first, last - first + 1), status_code=status, headers=headers)

    async def list_objects(request: Request, bucket: str) -> Response:
        store._bucket_row(bucket)
        params = request.query_params
        if params.get("matchGlob"):
            raise Unimplemented("matchGlob is not implemented by the emulator.")
        limit = _max_results(request)
        token = _decode_token(params.get("pageToken"))
        entries = store.iter_entries(
            bucket, params.get("prefix", ""), params.get("delimiter", ""), params.get("startOffset", ""),
            params.get("endOffset", ""), params.get("includeTrailingDelimiter", "").lower() == "true",
            token.get("after") if token else None, bool(token.get("prefix")) if token else False)
        items, prefixes, last = [], [], None
        base = base_of(request)
        more = False
        for count, (kind, value) in enumerate(entries):
            if count == limit:
                more = True
                break
            if kind == "item":
                items.append(store._object_resource(value, base))
                last = (value["name"], False)
            else:
                prefixes.append(value)
                last = (value, True)
        payload: dict[str, Any] = {"kind": "storage#objects"}
        if prefixes:
            payload["prefixes"] = prefixes
        if items:
            payload["items"] = items
        if more and last is not None:
            payload["nextPageToken"] = _encode_token({"after": last[0], "prefix": last[1]})
        return _json(payload)

    async def delete_object(request: Request, bucket: str, object: str) -> Response:
        store.delete_object(bucket, _object_name_from(request, object), _int_param(request, "generation"),
                            _preconditions(request))
        return Response(status_code=204)

    async def patch_object(request: Request, bucket: str, object: str) -> Response:
        name = _object_name_from(request, object)
        body = await read_json(request, _MAX_METADATA_BYTES)
        row = store.patch_object(bucket, name, body, request.method == "PUT", _int_param(request, "generation"),
                                 _preconditions(request))
        return _json(store._object_resource(row, base_of(request)))

    # -- uploads ----------------------------------------------------------------------------------------------

    def new_object(request: Request, bucket: str, metadata: dict[str, Any], content_type: str | None) -> _NewObject:
        store._bucket_row(bucket)
        name = metadata.get("name") or request.query_params.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("Required: object name (the `name` field of the metadata or the `name` parameter).")
        validate_object_name(name)
        fields = {key: metadata[key] for key in _OBJECT_WRITABLE if metadata.get(key) is not None}
        if "metadata" in fields:
            if not isinstance(fields["metadata"], dict):
                raise InvalidArgument("Invalid value for metadata: expected an object.")
            fields["metadata"] = {str(k): str(v) for k, v in fields["metadata"].items() if v is not None}
        if metadata.get("storageClass"):
            fields["storageClass"] = str(metadata["storageClass"]).upper()
        new = _NewObject(bucket=bucket, name=name,
                         content_type=metadata.get("contentType") or content_type or "application/octet-stream",
                         fields=fields, preconditions=_preconditions(request),
                         expected_md5=metadata.get("md5Hash"), expected_crc32c=metadata.get("crc32c"))
        current = store.db.query_one("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))
        _check_preconditions(current, new.preconditions)   # fail fast; checked again when committing
        return new

    def check_declared_size(request: Request, slack: int = 0) -> None:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > store.max_upload_bytes + slack:
            raise PayloadTooLarge(too_large(int(declared)))

    def too_large(size: int | None = None) -> str:
        shown = f" of {size} bytes" if size is not None else ""
        return f"Upload{shown} exceeds the maximum object size of {store.max_upload_bytes} bytes."

    async def stream_to_temp(chunks: AsyncIterator[bytes], temp: Path) -> tuple[int, str, str]:
        """Write chunks to `temp`; (size, md5 b64, crc32c b64). 413 past max_upload_bytes."""
        sink = _Sink(temp)
        try:
            async for chunk in chunks:
                if sink.written + len(chunk) > store.max_upload_bytes:
                    raise PayloadTooLarge(too_large())
                await sink.write(chunk)
        except BaseException:
            await sink.close(sync=False)
            raise
        await sink.close()
        return sink.written, _b64(sink.md5.digest()), _crc32c_b64(sink.crc)

    async def insert_object(request: Request, bucket: str) -> Response:
        body = _Body(request)
        temp: Path | None = None
        try:
            upload_type = request.query_params.get("uploadType", "media")
            if upload_type == "multipart":
                check_declared_size(request, slack=_MAX_METADATA_BYTES)
                new, temp, size, md5_b64, crc_b64 = await receive_multipart(request, bucket, body)
            elif upload_type == "media":
                check_declared_size(request)
                new = new_object(request, bucket, {}, request.headers.get("content-type"))
                temp = store._temp_path()
                size, md5_b64, crc_b64 = await stream_to_temp(body.chunks(), temp)
            elif upload_type == "resumable":
                return await start_resumable(request, bucket, body)
            else:
                raise InvalidArgument(f"Invalid upload type {upload_type!r}: expected media, multipart or resumable.")
            row = store._commit(new, temp, size, md5_b64, crc_b64)
            return _json(store._object_resource(row, base_of(request)))
        except GoogleApiError:
            await body.drain()
            raise
        except ClientDisconnect:
            return Response(status_code=499)
        finally:
            if temp is not None:
                temp.unlink(missing_ok=True)

    async def receive_multipart(request: Request, bucket: str, body: _Body
                                ) -> tuple[_NewObject, Path, int, str, str]:
        content_type = request.headers.get("content-type", "")
        match = _BOUNDARY.search(content_type)
        if not content_type.lower().startswith("multipart/related") or match is None:
            raise InvalidArgument("uploadType=multipart needs Content-Type: multipart/related; boundary=...")
        boundary = (match.group(1) or match.group(2)).encode("latin-1")
        reader = _Reader(body)
        await reader.read_until(b"--" + boundary, 64 * 1024, "the preamble")
        await reader.read_until(b"\r\n", 1024, "the first boundary line")
        part_headers = _parse_part_headers(await reader.read_until(b"\r\n\r\n", 16 * 1024, "part headers"))
        if not part_headers.get("content-type", "application/json").lower().startswith("application/json"):
            raise InvalidArgument("The first part of a multipart upload must be the JSON object metadata.")
        delimiter = b"\r\n--" + boundary
        raw_metadata = await reader.read_until(delimiter, _MAX_METADATA_BYTES, "the metadata part")
        try:
            metadata = json.loads(raw_metadata or b"{}")
        except ValueError as error:
            raise InvalidArgument(f"Invalid JSON in the metadata part: {error}") from error
        if not isinstance(metadata, dict):
            raise InvalidArgument("The metadata part must be a JSON object.")
        after = await reader.read_until(b"\r\n", 1024, "a boundary line")
        if after.startswith(b"--"):
            raise InvalidArgument("Multipart upload without a media part.")
        media_headers = _parse_part_headers(await reader.read_until(b"\r\n\r\n", 16 * 1024, "part headers"))
        new = new_object(request, bucket, metadata, media_headers.get("content-type"))
        temp = store._temp_path()
        try:
            size, md5_b64, crc_b64 = await stream_to_temp(reader.stream_until(delimiter), temp)
            while len(reader.buffer) < 2 and await reader.fill():
                pass
            if not reader.buffer.startswith(b"--"):
                raise InvalidArgument("A multipart upload has exactly two parts: the JSON metadata, then the media.")
            await body.drain(64 * 1024)   # the epilogue, if any
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return new, temp, size, md5_b64, crc_b64

    async def start_resumable(request: Request, bucket: str, body: _Body) -> Response:
        metadata = await body.read_json(_MAX_METADATA_BYTES)
        new = new_object(request, bucket, metadata, request.headers.get("x-upload-content-type"))
        declared = request.headers.get("x-upload-content-length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > store.max_upload_bytes:
            raise PayloadTooLarge(too_large(total))
        resource = dict(new.fields)
        for key in ("md5Hash", "crc32c"):
            if metadata.get(key):
                resource[key] = metadata[key]
        upload_id = uuid.uuid4().hex + uuid.uuid4().hex
        store._upload_path(upload_id).touch()
        _micros, stamp = _now()
        with store.db.transaction() as conn:
            conn.execute("INSERT INTO gcs_uploads (upload_id, bucket, name, resource, content_type, total_size, "
                         "received, preconditions, created) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                         (upload_id, bucket, new.name, json.dumps(resource), new.content_type, total,
                          json.dumps(new.preconditions), stamp))
        location = (f"{base_of(request)}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                    f"&name={quote(new.name, safe='')}&upload_id={upload_id}")
        return Response(status_code=200, headers={"location": location, "x-guploader-uploadid": upload_id,
                                                  "content-length": "0"})

    def upload_lock(upload_id: str) -> asyncio.Lock:
        return store._upload_locks.setdefault(upload_id, asyncio.Lock())

    async def put_chunk(request: Request, bucket: str) -> Response:
        body = _Body(request)
        try:
            upload_id = request.query_params.get("upload_id")
            if not upload_id:
                raise InvalidArgument("Missing upload_id: PUT needs the session URI returned by uploadType=resumable.")
            async with upload_lock(upload_id):
                return await receive_chunk(request, bucket, upload_id, body)
        except GoogleApiError:
            await body.drain()
            raise
        except ClientDisconnect:
            return Response(status_code=499)

    def progress(upload: _Upload) -> Response:
        headers = {"content-length": "0"}
        if upload.received:
            headers["range"] = f"bytes=0-{upload.received - 1}"
        return Response(status_code=308, headers=headers)

    def finished(request: Request, upload: _Upload) -> Response:
        row = store.db.query_one("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?",
                                 (upload.bucket, upload.name))
        if row is None or row["generation"] != upload.result_generation:
            raise NotFound(f"The object uploaded by session {upload.upload_id} no longer exists.")
        return _json(store._object_resource(row, base_of(request)))

    async def receive_chunk(request: Request, bucket: str, upload_id: str, body: _Body) -> Response:
        upload = store._load_upload(upload_id, bucket)
        if upload.result_generation is not None:
            await body.drain()
            return finished(request, upload)
        header = request.headers.get("content-range")
        if header is None:   # one PUT with the whole object
            first, last, total = 0, None, None
            if upload.received:
                store._hash_states.pop(upload_id, None)
                upload.received = 0
        else:
            match = _CONTENT_RANGE.match(header.strip())
            if match is None:
                raise InvalidArgument(f"Invalid Content-Range header {header!r}: expected 'bytes FIRST-LAST/TOTAL', "
                                      "'bytes FIRST-LAST/*', 'bytes */TOTAL' or 'bytes */*'.")
            first = int(match.group(1)) if match.group(1) is not None else None
            last = int(match.group(2)) if match.group(2) is not None else None
            total = int(match.group(3)) if match.group(3) != "*" else None
            if first is not None and last is not None and last < first:
                raise InvalidArgument(f"Invalid Content-Range header {header!r}: last byte before first byte.")
        if total is not None:
            if total > store.max_upload_bytes:
                raise PayloadTooLarge(too_large(total))
            if upload.total_size is not None and total != upload.total_size:
                raise InvalidArgument(f"Content-Range total {total} differs from the declared size "
                                      f"{upload.total_size} of the upload.")
            if last is not None and last >= total:
                raise InvalidArgument(f"Invalid Content-Range header {header!r}: range past the total size.")
            if total < upload.received:
                raise InvalidArgument(f"Content-Range total {total} is below the {upload.received} bytes received.")
        if header is not None and first is None:   # status query or finalisation without bytes
            await body.drain()
            if total is not None and total == upload.received:
                return await finalize(request, upload)
            return progress(upload)
        if first > upload.received:
            raise InvalidArgument(f"Invalid request. According to the Content-Range header, the upload offset is "
                                  f"{first} byte(s), which exceeds already uploaded size of {upload.received} byte(s).")
        expected = None if last is None else last - first + 1
        skip = upload.received - first   # bytes the server already has (a retried chunk)
        path = store._upload_path(upload_id)
        os.truncate(path, upload.received)   # drop bytes of a chunk that was cut short before being recorded
        state = store._hash_states.get(upload_id)
        if state is None or state.offset != upload.received:
            state = await anyio.to_thread.run_sync(store._rehash, path, upload.received)
        sink = _Sink(path, offset=upload.received, md5=state.md5, crc=state.crc, create=False)
        seen = 0
        try:
            async for chunk in body.chunks():
                if expected is not None and seen + len(chunk) > expected:
                    raise InvalidArgument(f"Request body is longer than the {expected} bytes of Content-Range "
                                          f"{header!r}.")
                seen += len(chunk)
                if skip > 0:
                    dropped = min(skip, len(chunk))
                    chunk, skip = chunk[dropped:], skip - dropped
                    if not chunk:
                        continue
                if upload.received + sink.written + len(chunk) > store.max_upload_bytes:
                    raise PayloadTooLarge(too_large())
                await sink.write(chunk)
        finally:
            try:
                await sink.close(sync=False)
            finally:
                upload.received += sink.written
                store._hash_states[upload_id] = _HashState(upload.received, sink.md5, sink.crc)
                with store.db.transaction() as conn:
                    conn.execute("UPDATE gcs_uploads SET received = ? WHERE upload_id = ?",
                                 (upload.received, upload_id))
        if expected is not None and seen < expected:
            raise InvalidArgument(f"Request body has {seen} bytes; Content-Range {header!r} announced {expected}.")
        if header is None:
            total = upload.received
        if total is not None and upload.received >= total:
            return await finalize(request, upload, request.headers.get("x-goog-hash"))
        return progress(upload)

    async def finalize(request: Request, upload: _Upload, hash_header: str | None = None) -> Response:
        path = store._upload_path(upload.upload_id)
        state = store._hash_states.get(upload.upload_id)
        if state is None or state.offset != upload.received:
            state = await anyio.to_thread.run_sync(store._rehash, path, upload.received)
        md5_b64, crc_b64 = _b64(state.md5.digest()), _crc32c_b64(state.crc)
        resource = dict(upload.resource)
        expected_md5, expected_crc = resource.pop("md5Hash", None), resource.pop("crc32c", None)
        for item in (hash_header or "").split(","):
            kind, _, value = item.strip().partition("=")
            if kind == "md5" and value:
                expected_md5 = value
            elif kind == "crc32c" and value:
                expected_crc = value
        new = _NewObject(bucket=upload.bucket, name=upload.name, content_type=upload.content_type, fields=resource,
                         preconditions=upload.preconditions, expected_md5=expected_md5, expected_crc32c=expected_crc)
        await anyio.to_thread.run_sync(_fsync_path, path)
        try:
            row = store._commit(new, path, upload.received, md5_b64, crc_b64)
        except GoogleApiError:
            store._drop_upload(upload.upload_id)   # a failed finalisation ends the session, as in GCS
            raise
        with store.db.transaction() as conn:
            conn.execute("UPDATE gcs_uploads SET result_generation = ? WHERE upload_id = ?",
                         (row["generation"], upload.upload_id))
        store._hash_states.pop(upload.upload_id, None)
        store._upload_locks.pop(upload.upload_id, None)
        return _json(store._object_resource(row, base_of(request)))

    async def cancel_upload(request: Request, bucket: str) -> Response:
        upload_id = request.query_params.get("upload_id")
        if not upload_id:
            raise InvalidArgument("Missing upload_id.")
        store._load_upload(upload_id, bucket)
        store._drop_upload(upload_id)
        raise UploadCancelled("Upload cancelled by the client.")

    return [
        Route("POST", "/storage/v1/b", insert_bucket),
        Route("GET", "/storage/v1/b", list_buckets),
        Route("GET", "/storage/v1/b/{bucket}", get_bucket),
        Route("PATCH", "/storage/v1/b/{bucket}", patch_bucket),
        Route("PUT", "/storage/v1/b/{bucket}", patch_bucket),
        Route("DELETE", "/storage/v1/b/{bucket}", delete_bucket),
        Route("GET", "/storage/v1/b/{bucket}/o", list_objects),
        Route("GET", "/storage/v1/b/{bucket}/o/{object=**}", get_object),
        Route("PATCH", "/storage/v1/b/{bucket}/o/{object=**}", patch_object),
        Route("PUT", "/storage/v1/b/{bucket}/o/{object=**}", patch_object),
        Route("DELETE", "/storage/v1/b/{bucket}/o/{object=**}", delete_object),
        Route("GET", "/download/storage/v1/b/{bucket}/o/{object=**}", download_object),
        Route("POST", "/upload/storage/v1/b/{bucket}/o", insert_object),
        Route("PUT", "/upload/storage/v1/b/{bucket}/o", put_chunk),
        Route("DELETE", "/upload/storage/v1/b/{bucket}/o", cancel_upload),
    ]


def _fsync_path(path: Path) -> None:
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


async def _file_chunks(stream: BinaryIO, offset: int, length: int) -> AsyncIterator[bytes]:
    """Read `length` bytes from `offset` in 1 MiB chunks (in a thread), closing the file at the end."""
    try:
        if offset:
            await anyio.to_thread.run_sync(stream.seek, offset)
        left = length
        while left > 0:
            data = await anyio.to_thread.run_sync(stream.read, min(_IO_CHUNK, left))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        stream.close()

"""The Cloud Storage backend: buckets, objects and resumable sessions in SQLite, object bytes in files.

Object files live at `root/blobs/<sha256(bucket, name)[:2]>/<sha256>-<generation>`, never at a path built from the
object name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator
from urllib.parse import quote

import google_crc32c

from emulator.db import Database
from emulator.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, NotModified
from emulator.gcs.names import validate_bucket_name, validate_object_name
from emulator.gcs.streams import IO_CHUNK

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

_BUCKET_WRITABLE = ("versioning", "lifecycle", "cors", "website", "logging", "defaultEventBasedHold",
                    "retentionPolicy", "encryption", "billing", "autoclass", "softDeletePolicy",
                    "hierarchicalNamespace", "iamConfiguration", "rpo", "customPlacementConfig")
OBJECT_WRITABLE = ("cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "customTime",
                   "metadata", "temporaryHold", "eventBasedHold")
_MULTI_REGIONS = {"US", "EU", "ASIA"}
_DUAL_REGIONS = {"NAM4", "EUR4", "ASIA1", "EUR5", "EUR7", "EUR8"}


def now() -> tuple[int, str]:
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


def etag(*numbers: int) -> str:
    """Like GCS: base64 of a small protobuf (field 1, 2, ... as varints)."""
    raw = b"".join(bytes([(index << 3) | 0]) + _varint(number) for index, number in enumerate(numbers, start=1))
    return base64.b64encode(raw).decode()


def _project_number(project: str) -> str:
    if project.isdigit():
        return project
    return str(int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big") % 10**12)


def _precondition_failed() -> FailedPrecondition:
    return FailedPrecondition("At least one of the pre-conditions you specified did not hold.", http_status=412)


def check_preconditions(current: sqlite3.Row | None, conditions: dict[str, int], read: bool = False) -> None:
    """412 when a precondition fails (304 for the *NotMatch ones on reads, as GCS does)."""
    generation = current["generation"] if current is not None else 0
    metageneration = current["metageneration"] if current is not None else None
    if "ifGenerationMatch" in conditions and conditions["ifGenerationMatch"] != generation:
        raise _precondition_failed()
    if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != metageneration:
        raise _precondition_failed()
    not_match = (("ifGenerationNotMatch" in conditions and conditions["ifGenerationNotMatch"] == generation)
                 or ("ifMetagenerationNotMatch" in conditions
                     and conditions["ifMetagenerationNotMatch"] == metageneration))
    if not_match:
        if read:
            raise NotModified()
        raise _precondition_failed()


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None if there is none)."""
    last = ord(prefix[-1])
    if last == 0x10FFFF:
        return None
    following = 0xE000 if last == 0xD7FF else last + 1
    return prefix[:-1] + chr(following)


@dataclass
class HashState:
    offset: int
    md5: Any
    crc: int


@dataclass
class Upload:
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
    def from_row(cls, row: sqlite3.Row) -> "Upload":
        return cls(row["upload_id"], row["bucket"], row["name"], json.loads(row["resource"]), row["content_type"],
                   row["total_size"], row["received"], json.loads(row["preconditions"]), row["result_generation"])


@dataclass
class NewObject:
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
        self.hash_states: dict[str, HashState] = {}
        self.upload_locks: dict[str, asyncio.Lock] = {}
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

    def upload_path(self, upload_id: str) -> Path:
        return self._upload_dir / hashlib.sha256(upload_id.encode()).hexdigest()

    def temp_path(self) -> Path:
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
            row = self.object_row(bucket, name)
            try:
                return open(self.root / row["blob_path"], "rb")
            except FileNotFoundError:
                continue   # overwritten between the lookup and the open: look again
        raise NotFound(f"No such object: {bucket}/{name}")

    def object_metadata(self, bucket: str, name: str, base_url: str | None = None) -> dict[str, Any]:
        return self.object_resource(self.object_row(bucket, name), base_url)

    def reset(self) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gcs_uploads")
            conn.execute("DELETE FROM gcs_objects")
            conn.execute("DELETE FROM gcs_buckets")
        self.hash_states.clear()
        for directory in (self._blob_dir, self._tmp_dir, self._upload_dir):
            shutil.rmtree(directory, ignore_errors=True)
        self._make_dirs()

    # -- rows and resources -----------------------------------------------------------------------------------

    def bucket_row(self, bucket: str) -> sqlite3.Row:
        row = self.db.query_one("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,))
        if row is None:
            raise NotFound("The specified bucket does not exist.")
        return row

    def object_row(self, bucket: str, name: str) -> sqlite3.Row:
        row = self.live_object_row(bucket, name)
        if row is None:
            if not self.bucket_exists(bucket):
                raise NotFound("The specified bucket does not exist.")
            raise NotFound(f"No such object: {bucket}/{name}")
        return row

    def bucket_resource(self, row: sqlite3.Row, base_url: str | None = None) -> dict[str, Any]:
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
            "etag": etag(row["metageneration"]),
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

    def object_resource(self, row: sqlite3.Row, base_url: str | None = None) -> dict[str, Any]:
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
            "etag": etag(generation, row["metageneration"]),
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
        _micros, stamp = now()
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM gcs_buckets WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists("Your previous request to create the named bucket succeeded and you already own it.")
            conn.execute("INSERT INTO gcs_buckets (name, project, location, storage_class, labels, extra, "
                         "metageneration, time_created, updated) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                         (name, project, location, storage_class, json.dumps(labels), json.dumps(extra),
                          stamp, stamp))
        return self.bucket_row(name)

    def patch_bucket(self, bucket: str, body: dict[str, Any], replace: bool,
                     conditions: dict[str, int]) -> sqlite3.Row:
        _micros, stamp = now()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,)).fetchone()
            if row is None:
                raise NotFound("The specified bucket does not exist.")
            self.check_bucket_conditions(row, conditions)
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
        return self.bucket_row(bucket)

    @staticmethod
    def check_bucket_conditions(row: sqlite3.Row, conditions: dict[str, int], read: bool = False) -> None:
        """412 when a metageneration precondition fails (304 for ifMetagenerationNotMatch on reads)."""
        if "ifMetagenerationMatch" in conditions and conditions["ifMetagenerationMatch"] != row["metageneration"]:
            raise _precondition_failed()
        if conditions.get("ifMetagenerationNotMatch") == row["metageneration"]:
            raise NotModified() if read else _precondition_failed()

    def delete_bucket(self, bucket: str, conditions: dict[str, int]) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,)).fetchone()
            if row is None:
                raise NotFound("The specified bucket does not exist.")
            self.check_bucket_conditions(row, conditions)
            if conn.execute("SELECT 1 FROM gcs_objects WHERE bucket = ? LIMIT 1", (bucket,)).fetchone():
                raise FailedPrecondition("The bucket you tried to delete is not empty.", http_status=409)
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

    def commit(self, new: NewObject, temp: Path, size: int, md5_b64: str, crc_b64: str) -> sqlite3.Row:
        """Move `temp` into place as the new live generation (checks preconditions again, atomically)."""
        if new.expected_md5 is not None and new.expected_md5 != md5_b64:
            raise InvalidArgument(f"Provided MD5 hash \"{new.expected_md5}\" doesn't match calculated MD5 hash "
                                  f"\"{md5_b64}\".")
        if new.expected_crc32c is not None and new.expected_crc32c != crc_b64:
            raise InvalidArgument(f"Provided CRC32C \"{new.expected_crc32c}\" doesn't match calculated CRC32C "
                                  f"\"{crc_b64}\".")
        micros, stamp = now()
        old_path: str | None = None
        with self.db.transaction() as conn:
            bucket_row = conn.execute("SELECT storage_class FROM gcs_buckets WHERE name = ?",
                                      (new.bucket,)).fetchone()
            if bucket_row is None:
                raise NotFound("The specified bucket does not exist.")
            current = conn.execute("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?",
                                   (new.bucket, new.name)).fetchone()
            check_preconditions(current, new.preconditions)
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
        return self.object_row(new.bucket, new.name)

    def delete_object(self, bucket: str, name: str, generation: int | None, conditions: dict[str, int]) -> None:
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name)).fetchone()
            if row is None or (generation is not None and row["generation"] != generation):
                if conn.execute("SELECT 1 FROM gcs_buckets WHERE name = ?", (bucket,)).fetchone() is None:
                    raise NotFound("The specified bucket does not exist.")
                raise NotFound(f"No such object: {bucket}/{name}")
            check_preconditions(row, conditions)
            conn.execute("DELETE FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))
        (self.root / row["blob_path"]).unlink(missing_ok=True)

    def patch_object(self, bucket: str, name: str, body: dict[str, Any], replace: bool,
                     generation: int | None, conditions: dict[str, int]) -> sqlite3.Row:
        _micros, stamp = now()
        with self.db.transaction() as conn:
            row = conn.execute("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name)).fetchone()
            if row is None or (generation is not None and row["generation"] != generation):
                raise NotFound(f"No such object: {bucket}/{name}")
            check_preconditions(row, conditions)
            extra = {} if replace else json.loads(row["extra"])
            for key in OBJECT_WRITABLE:
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
        return self.object_row(bucket, name)

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

    def live_object_row(self, bucket: str, name: str) -> sqlite3.Row | None:
        """The object's row, or None when there is no such object."""
        return self.db.query_one("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))

    def insert_upload(self, upload_id: str, new: NewObject, resource: dict[str, Any], total: int | None) -> None:
        """Record a new resumable session for `new` (its future metadata `resource`, its size if declared)."""
        _micros, stamp = now()
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO gcs_uploads (upload_id, bucket, name, resource, content_type, total_size, "
                         "received, preconditions, created) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                         (upload_id, new.bucket, new.name, json.dumps(resource), new.content_type, total,
                          json.dumps(new.preconditions), stamp))

    def record_received(self, upload_id: str, received: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE gcs_uploads SET received = ? WHERE upload_id = ?", (received, upload_id))

    def finish_upload(self, upload_id: str, generation: int) -> None:
        """Mark the session done with the object generation it made (a retried final chunk gets that object)."""
        with self.db.transaction() as conn:
            conn.execute("UPDATE gcs_uploads SET result_generation = ? WHERE upload_id = ?", (generation, upload_id))
        self.hash_states.pop(upload_id, None)
        self.upload_locks.pop(upload_id, None)

    def load_upload(self, upload_id: str, bucket: str) -> Upload:
        row = self.db.query_one("SELECT * FROM gcs_uploads WHERE upload_id = ? AND bucket = ?", (upload_id, bucket))
        if row is None:
            raise NotFound(f"No such upload: {upload_id}")
        return Upload.from_row(row)

    def _forget_upload_file(self, upload_id: str) -> None:
        self.hash_states.pop(upload_id, None)
        self.upload_locks.pop(upload_id, None)
        self.upload_path(upload_id).unlink(missing_ok=True)

    def drop_upload(self, upload_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM gcs_uploads WHERE upload_id = ?", (upload_id,))
        self._forget_upload_file(upload_id)

    def rehash(self, path: Path, length: int) -> HashState:
        """md5 and crc32c of the first `length` bytes of `path` (after a restart or an overlapping chunk)."""
        md5, crc, left = hashlib.md5(), 0, length
        with open(path, "rb") as stream:
            while left > 0:
                data = stream.read(min(IO_CHUNK, left))
                if not data:
                    raise InvalidArgument("The upload's stored bytes are shorter than recorded.")
                md5.update(data)
                crc = google_crc32c.extend(crc, data)
                left -= len(data)
        return HashState(length, md5, crc)

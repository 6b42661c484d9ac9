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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator
from urllib.parse import quote

from emulator.clock import now_rfc3339
from emulator.db import Database
from emulator.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, NotModified
from emulator.gcs.names import validate_bucket_name, validate_object_name
from emulator.gcs.streams import Hashes

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
_OBJECT_WRITABLE = ("cacheControl", "contentDisposition", "contentEncoding", "contentLanguage", "customTime",
                   "metadata", "temporaryHold", "eventBasedHold")
_LOCATION_TYPES = {"US": "multi-region", "EU": "multi-region", "ASIA": "multi-region", "NAM4": "dual-region",
                   "EUR4": "dual-region", "ASIA1": "dual-region", "EUR5": "dual-region", "EUR7": "dual-region",
                   "EUR8": "dual-region"}
_LAST_CHAR = "\U0010ffff"   # `p + _LAST_CHAR` sorts after the names that start with `p` (bar `p + _LAST_CHAR...`)


def etag(*numbers: int) -> str:
    """Like GCS: base64 of a small protobuf (fields 1, 2, ... as varints)."""
    raw = bytearray()
    for index, number in enumerate(numbers, start=1):
        raw.append(index << 3)
        while number > 0x7F:
            raw.append(number & 0x7F | 0x80)
            number >>= 7
        raw.append(number)
    return base64.b64encode(raw).decode()


def _now() -> str:
    return now_rfc3339()[:23] + "Z"   # milliseconds, as GCS writes its timestamps


def _project_number(project: str) -> str:
    if project.isdigit():
        return project
    return str(int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big") % 10**12)


def object_field(body: dict[str, Any], key: str) -> dict[str, Any]:
    """`body[key]` as a JSON object (`{}` when absent or null); 400 when it is something else."""
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"Invalid value for {key}: expected an object.")
    return value


def _merged(current: dict[str, Any], changes: dict[str, Any], convert: Callable[[Any], Any] = lambda v: v
            ) -> dict[str, Any]:
    """`current` with `changes` applied as a patch: a null value removes its key."""
    merged = dict(current)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = convert(value)
    return merged


def check_preconditions(row: sqlite3.Row | None, conditions: dict[str, int], read: bool = False) -> None:
    """412 when an `if[Meta]generation[Not]Match` precondition fails (304 for the NotMatch ones on reads, as GCS
    does). No row is an absent object, generation 0; a bucket row has no generation, so ifGeneration* is ignored."""
    current = dict(row) if row is not None else {"generation": 0, "metageneration": None}
    values = {name: current[name.lower()] for name in ("Generation", "Metageneration") if name.lower() in current}
    failed = FailedPrecondition("At least one of the pre-conditions you specified did not hold.", http_status=412)
    if any(conditions.get(f"if{name}Match", value) != value for name, value in values.items()):
        raise failed
    if any(f"if{name}NotMatch" in conditions and conditions[f"if{name}NotMatch"] == value
           for name, value in values.items()):
        raise NotModified() if read else failed


@dataclass
class NewObject:
    bucket: str
    name: str
    content_type: str
    fields: dict[str, Any]
    preconditions: dict[str, int]
    expected_md5: str | None
    expected_crc32c: str | None

    @classmethod
    def from_metadata(cls, bucket: str, name: str, metadata: dict[str, Any], content_type: str | None,
                      preconditions: dict[str, int]) -> NewObject:
        """The object an upload makes: the writable fields of its `metadata`, the checksums it must have."""
        fields = {key: metadata[key] for key in _OBJECT_WRITABLE if metadata.get(key) is not None}
        if "metadata" in fields:
            fields["metadata"] = {str(k): str(v) for k, v in object_field(fields, "metadata").items() if v is not None}
        if metadata.get("storageClass"):
            fields["storageClass"] = str(metadata["storageClass"]).upper()
        return cls(bucket, name, metadata.get("contentType") or content_type or "application/octet-stream", fields,
                   preconditions, metadata.get("md5Hash"), metadata.get("crc32c"))


@dataclass
class Upload(NewObject):
    """A resumable upload session (row of gcs_uploads): the object it makes, and how far it got."""

    upload_id: str
    total_size: int | None
    received: int
    result_generation: int | None


class ObjectStore:
    """Buckets and objects: metadata rows in SQLite, object bytes in files under `root`."""

    def __init__(self, db: Database, root: Path, max_upload_bytes: int, project: str = "local-project") -> None:
        self.db = db
        self.root = Path(root).resolve()
        self.max_upload_bytes = max_upload_bytes
        self.project = project
        db.ensure_schema(SCHEMA)
        self.hash_states: dict[str, Hashes] = {}
        self.upload_locks: dict[str, asyncio.Lock] = {}
        self.blob_dir, self.tmp_dir, self.upload_dir = (self.root / name for name in ("blobs", "tmp", "uploads"))
        self._make_dirs(self.tmp_dir)   # half-written uploads of a previous run go

    def _make_dirs(self, *emptied: Path) -> None:
        """Create the blob, temp and upload dirs, emptying those in `emptied` first."""
        for directory in (self.blob_dir, self.tmp_dir, self.upload_dir):
            if directory in emptied:
                shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True, exist_ok=True)

    def _execute(self, sql: str, params: tuple) -> None:
        with self.db.transaction() as conn:
            conn.execute(sql, params)

    @staticmethod
    def _blob_relpath(bucket: str, name: str, generation: int) -> str:
        digest = hashlib.sha256(bucket.encode() + b"\0" + name.encode("utf-8", "surrogatepass")).hexdigest()
        return f"blobs/{digest[:2]}/{digest}-{generation}"

    def upload_path(self, upload_id: str) -> Path:
        return self.upload_dir / hashlib.sha256(upload_id.encode()).hexdigest()

    def temp_path(self) -> Path:
        return self.tmp_dir / uuid.uuid4().hex

    # -- public helpers (used by the Vertex side) -------------------------------------------------------------

    @staticmethod
    def parse_gs_uri(uri: str) -> tuple[str, str]:
        """`gs://bucket/path/to/object` -> (bucket, object); 400 for anything else."""
        bucket, _, name = uri.removeprefix("gs://").partition("/") if isinstance(uri, str) else ("", "", "")
        if not (bucket and name and uri.startswith("gs://")):
            raise InvalidArgument(f"Invalid Cloud Storage URI {uri!r}: expected gs://BUCKET/OBJECT.")
        validate_bucket_name(bucket)
        validate_object_name(name)
        return bucket, name

    def bucket_exists(self, bucket: str) -> bool:
        return self.db.query_one("SELECT 1 FROM gcs_buckets WHERE name = ?", (bucket,)) is not None

    def open_object(self, bucket: str, name: str) -> BinaryIO:
        """The live object's bytes, opened for reading (404 NotFound if there is no such object)."""
        for _attempt in range(3):
            try:
                return open(self.root / self.object_row(bucket, name)["blob_path"], "rb")
            except FileNotFoundError:
                continue   # overwritten between the lookup and the open (from another thread): look again
        raise NotFound(f"No such object: {bucket}/{name}")

    def object_metadata(self, bucket: str, name: str) -> dict[str, Any]:
        return self.object_resource(self.object_row(bucket, name), "https://storage.googleapis.com")

    def reset(self) -> None:
        with self.db.transaction() as conn:
            for table in ("gcs_uploads", "gcs_objects", "gcs_buckets"):
                conn.execute(f"DELETE FROM {table}")
        self.hash_states.clear()
        self._make_dirs(self.blob_dir, self.tmp_dir, self.upload_dir)

    # -- rows and resources -----------------------------------------------------------------------------------

    def bucket_row(self, bucket: str) -> sqlite3.Row:
        row = self.db.query_one("SELECT * FROM gcs_buckets WHERE name = ?", (bucket,))
        if row is None:
            raise NotFound("The specified bucket does not exist.")
        return row

    def live_object_row(self, bucket: str, name: str) -> sqlite3.Row | None:
        """The object's row, or None when there is no such object."""
        return self.db.query_one("SELECT * FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))

    def object_row(self, bucket: str, name: str, generation: int | None = None) -> sqlite3.Row:
        """The live object's row (of that `generation` if given); 404 naming what is missing, bucket or object."""
        row = self.live_object_row(bucket, name)
        if row is None or generation not in (None, row["generation"]):
            self.bucket_row(bucket)
            raise NotFound(f"No such object: {bucket}/{name}" + (f"#{generation}" if generation is not None else ""))
        return row

    def bucket_resource(self, row: sqlite3.Row, base: str) -> dict[str, Any]:
        labels = json.loads(row["labels"])
        return {
            "kind": "storage#bucket",
            "selfLink": f"{base}/storage/v1/b/{row['name']}",
            "id": row["name"],
            "name": row["name"],
            "projectNumber": _project_number(row["project"]),
            "metageneration": str(row["metageneration"]),
            "location": row["location"],
            "storageClass": row["storage_class"],
            "etag": etag(row["metageneration"]),
            "timeCreated": row["time_created"],
            "updated": row["updated"],
            "iamConfiguration": {
                "bucketPolicyOnly": {"enabled": False},
                "uniformBucketLevelAccess": {"enabled": False},
                "publicAccessPrevention": "inherited",
            },
            "locationType": _LOCATION_TYPES.get(row["location"], "region"),
            "rpo": "DEFAULT",
            **json.loads(row["extra"]),
            **({"labels": labels} if labels else {}),
        }

    def object_resource(self, row: sqlite3.Row, base: str) -> dict[str, Any]:
        bucket, name, generation = row["bucket"], row["name"], row["generation"]
        encoded = quote(name, safe="~")
        return {
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
            **{key: value for key, value in json.loads(row["extra"]).items() if value not in (None, {})},
        }

    # -- buckets ----------------------------------------------------------------------------------------------

    def create_bucket(self, project: str, body: dict[str, Any]) -> sqlite3.Row:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("Required: bucket name.")
        validate_bucket_name(name)
        labels = object_field(body, "labels")
        location = str(body.get("location") or "US").upper()
        storage_class = str(body.get("storageClass") or "STANDARD").upper()
        extra = {key: body[key] for key in _BUCKET_WRITABLE if key in body}
        stamp = _now()
        with self.db.transaction() as conn:
            if self.bucket_exists(name):
                raise AlreadyExists("Your previous request to create the named bucket succeeded and you already own it.")
            conn.execute("INSERT INTO gcs_buckets (name, project, location, storage_class, labels, extra, "
                         "metageneration, time_created, updated) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)",
                         (name, project, location, storage_class, json.dumps(labels), json.dumps(extra),
                          stamp, stamp))
        return self.bucket_row(name)

    def patch_bucket(self, bucket: str, body: dict[str, Any], replace: bool,
                     conditions: dict[str, int]) -> sqlite3.Row:
        with self.db.transaction() as conn:
            row = self.bucket_row(bucket)
            check_preconditions(row, conditions)
            labels = _merged({} if replace else json.loads(row["labels"]), object_field(body, "labels"), str)
            extra = _merged({} if replace else json.loads(row["extra"]),
                            {key: body[key] for key in _BUCKET_WRITABLE if key in body})
            storage_class = str(body.get("storageClass") or row["storage_class"]).upper()
            conn.execute("UPDATE gcs_buckets SET labels = ?, extra = ?, storage_class = ?, "
                         "metageneration = metageneration + 1, updated = ? WHERE name = ?",
                         (json.dumps(labels), json.dumps(extra), storage_class, _now(), bucket))
        return self.bucket_row(bucket)

    def delete_bucket(self, bucket: str, conditions: dict[str, int]) -> None:
        with self.db.transaction() as conn:
            check_preconditions(self.bucket_row(bucket), conditions)
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
        return rows[:limit], (rows[limit - 1]["name"] if len(rows) > limit else None)

    # -- objects: commit, delete, patch, list ------------------------------------------------------------------

    def commit(self, new: NewObject, temp: Path, hashes: Hashes) -> sqlite3.Row:
        """Move `temp` into place as the new live generation (checks preconditions again, atomically)."""
        size, (md5_b64, crc_b64) = hashes.size, hashes.digests()
        for kind, expected, actual in (("MD5 hash", new.expected_md5, md5_b64), ("CRC32C", new.expected_crc32c, crc_b64)):
            if expected is not None and expected != actual:
                raise InvalidArgument(f"Provided {kind} \"{expected}\" doesn't match calculated {kind} \"{actual}\".")
        stamp = _now()
        with self.db.transaction() as conn:
            bucket_row = self.bucket_row(new.bucket)
            current = self.live_object_row(new.bucket, new.name)
            check_preconditions(current, new.preconditions)
            generation = max(time.time_ns() // 1000, current["generation"] + 1 if current is not None else 0)
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
        if current is not None and current["blob_path"] != relpath:
            (self.root / current["blob_path"]).unlink(missing_ok=True)
        return self.object_row(new.bucket, new.name)

    def delete_object(self, bucket: str, name: str, generation: int | None, conditions: dict[str, int]) -> None:
        with self.db.transaction() as conn:
            row = self.object_row(bucket, name, generation)
            check_preconditions(row, conditions)
            conn.execute("DELETE FROM gcs_objects WHERE bucket = ? AND name = ?", (bucket, name))
        (self.root / row["blob_path"]).unlink(missing_ok=True)

    def patch_object(self, bucket: str, name: str, body: dict[str, Any], replace: bool,
                     generation: int | None, conditions: dict[str, int]) -> sqlite3.Row:
        with self.db.transaction() as conn:
            row = self.object_row(bucket, name, generation)
            check_preconditions(row, conditions)
            extra = {} if replace else json.loads(row["extra"])
            changes = {key: body[key] for key in _OBJECT_WRITABLE if key in body}
            if changes.get("metadata") is not None:
                changes["metadata"] = _merged({} if replace else extra.get("metadata") or {},
                                              object_field(changes, "metadata"), str) or None
            content_type = body.get("contentType") or (None if replace else row["content_type"])
            conn.execute("UPDATE gcs_objects SET extra = ?, content_type = ?, metageneration = metageneration + 1, "
                         "updated = ? WHERE bucket = ? AND name = ?",
                         (json.dumps(_merged(extra, changes)), content_type or "application/octet-stream",
                          _now(), bucket, name))
        return self.object_row(bucket, name)

    def iter_entries(self, bucket: str, prefix: str, delimiter: str, start_offset: str, end_offset: str,
                     include_trailing: bool, after: tuple[str, bool] | None) -> Iterator[tuple[str, Any]]:
        """(name, row) for objects and (common prefix, None) for prefixes, in name order as objects.list lists
        them, after `after` (the last entry of the previous page: its name, and whether it was a prefix)."""
        lower, op, skip = max(prefix, start_offset), ">=", None   # names in `skip` were listed as a prefix
        if after is not None:
            candidate, skip = (after[0] + _LAST_CHAR, after[0]) if after[1] else (after[0], None)
            if candidate >= lower:
                lower, op = candidate, ">"
        while rows := self.db.query(f"SELECT * FROM gcs_objects WHERE bucket = ? AND name {op} ? ORDER BY name "
                                    "LIMIT 500", (bucket, lower)):
            for row in rows:
                name = row["name"]
                if not name.startswith(prefix) or (end_offset and name >= end_offset):
                    return
                lower, op = name, ">"
                if skip is not None and name.startswith(skip):
                    continue
                index = name.find(delimiter, len(prefix)) if delimiter else -1
                if index < 0:
                    yield name, row
                    continue
                skip = name[:index + len(delimiter)]
                if include_trailing and skip == name:
                    yield name, row
                yield skip, None
                lower = skip + _LAST_CHAR   # jump past the names under this prefix
                break

    # -- resumable sessions -----------------------------------------------------------------------------------

    def insert_upload(self, upload_id: str, new: NewObject, total: int | None) -> None:
        """Record a new resumable session for `new` (its checksums kept with its fields), its size if declared."""
        checksums = {key: value for key, value in (("md5Hash", new.expected_md5), ("crc32c", new.expected_crc32c))
                     if value}
        self._execute("INSERT INTO gcs_uploads (upload_id, bucket, name, resource, content_type, total_size, "
                      "received, preconditions, created) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                      (upload_id, new.bucket, new.name, json.dumps(new.fields | checksums), new.content_type, total,
                       json.dumps(new.preconditions), _now()))

    def record_received(self, upload_id: str, received: int) -> None:
        self._execute("UPDATE gcs_uploads SET received = ? WHERE upload_id = ?", (received, upload_id))

    def finish_upload(self, upload_id: str, generation: int) -> None:
        """Mark the session done with the object generation it made (a retried final chunk gets that object)."""
        self._execute("UPDATE gcs_uploads SET result_generation = ? WHERE upload_id = ?", (generation, upload_id))
        self._forget_upload_file(upload_id)   # its bytes are the object's file now

    def load_upload(self, upload_id: str, bucket: str) -> Upload:
        row = self.db.query_one("SELECT * FROM gcs_uploads WHERE upload_id = ? AND bucket = ?", (upload_id, bucket))
        if row is None:
            raise NotFound(f"No such upload: {upload_id}")
        fields = json.loads(row["resource"])
        md5, crc32c = fields.pop("md5Hash", None), fields.pop("crc32c", None)
        return Upload(row["bucket"], row["name"], row["content_type"], fields, json.loads(row["preconditions"]), md5,
                      crc32c, upload_id, row["total_size"], row["received"], row["result_generation"])

    def _forget_upload_file(self, upload_id: str) -> None:
        self.hash_states.pop(upload_id, None)
        self.upload_locks.pop(upload_id, None)
        self.upload_path(upload_id).unlink(missing_ok=True)

    def drop_upload(self, upload_id: str) -> None:
        self._execute("DELETE FROM gcs_uploads WHERE upload_id = ?", (upload_id,))
        self._forget_upload_file(upload_id)

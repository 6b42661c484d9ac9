"""The GCS JSON API route table and its handlers: parse the request, call the ObjectStore, serialize.

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
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import uuid
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote, unquote_to_bytes

import anyio
from python_multipart.multipart import parse_options_header
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from emulator.errors import Cancelled, GoogleApiError, InvalidArgument, NotFound, Unimplemented, too_large
from emulator.gcs.names import validate_object_name
from emulator.gcs.store import OBJECT_WRITABLE, HashState, NewObject, ObjectStore, Upload, check_preconditions, etag
from emulator.gcs.streams import (
    IO_CHUNK,
    Body,
    Sink,
    b64,
    crc32c_b64,
    fsync_path,
    parse_content_range,
    related_parts,
)
from emulator.paging import after_key, with_next_page
from emulator.requests import json_object, read_json
from emulator.routes import ApiRoute, route

_MAX_METADATA_BYTES = 1024 * 1024  # JSON metadata of an upload, buckets.insert bodies
_MAX_PAGE = 1000
_MEDIA_HEADERS = {"cacheControl": "cache-control", "contentDisposition": "content-disposition",
                  "contentLanguage": "content-language", "contentEncoding": "content-encoding"}
_OBJECT_PATH = re.compile(rb"^/(?:download/)?storage/v1/b/([^/]+)/o/(.+)$")


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


def _max_results(request: Request) -> int:
    value = _int_param(request, "maxResults")
    if value is None:
        return _MAX_PAGE
    if value < 1:
        raise InvalidArgument("maxResults must be a positive integer.")
    return min(value, _MAX_PAGE)


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


class GcsApi:
    """Handlers of the bucket, object and upload routes, served from one ObjectStore."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def routes(self) -> list[ApiRoute]:
        return [
            route("POST", "/storage/v1/b", self.insert_bucket),
            route("GET", "/storage/v1/b", self.list_buckets),
            route("GET", "/storage/v1/b/{bucket}", self.get_bucket),
            route("PATCH", "/storage/v1/b/{bucket}", self.patch_bucket),
            route("PUT", "/storage/v1/b/{bucket}", self.patch_bucket),
            route("DELETE", "/storage/v1/b/{bucket}", self.delete_bucket),
            route("GET", "/storage/v1/b/{bucket}/o", self.list_objects),
            route("GET", "/storage/v1/b/{bucket}/o/{object=**}", self.get_object),
            route("PATCH", "/storage/v1/b/{bucket}/o/{object=**}", self.patch_object),
            route("PUT", "/storage/v1/b/{bucket}/o/{object=**}", self.patch_object),
            route("DELETE", "/storage/v1/b/{bucket}/o/{object=**}", self.delete_object),
            route("GET", "/download/storage/v1/b/{bucket}/o/{object=**}", self.download_object),
            route("POST", "/upload/storage/v1/b/{bucket}/o", self.insert_object),
            route("PUT", "/upload/storage/v1/b/{bucket}/o", self.put_chunk),
            route("DELETE", "/upload/storage/v1/b/{bucket}/o", self.cancel_upload),
        ]

    def _base_of(self, request: Request) -> str:
        base = str(request.base_url).rstrip("/")
        self.store.base_url = base
        return base

    # -- buckets ----------------------------------------------------------------------------------------------

    async def insert_bucket(self, request: Request) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        project = request.query_params.get("project") or self.store.project
        row = self.store.create_bucket(project, body)
        return JSONResponse(self.store.bucket_resource(row, self._base_of(request)))

    async def list_buckets(self, request: Request) -> Response:
        project = request.query_params.get("project") or self.store.project
        rows, last = self.store.list_buckets(project, request.query_params.get("prefix", ""), _max_results(request),
                                             after_key(request))
        base = self._base_of(request)
        payload: dict[str, Any] = {"kind": "storage#buckets"}
        if rows:
            payload["items"] = [self.store.bucket_resource(row, base) for row in rows]
        return JSONResponse(with_next_page(payload, last))

    async def get_bucket(self, request: Request, bucket: str) -> Response:
        row = self.store.bucket_row(bucket)
        self.store.check_bucket_conditions(row, _preconditions(request), read=True)
        return JSONResponse(self.store.bucket_resource(row, self._base_of(request)))

    async def patch_bucket(self, request: Request, bucket: str) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        row = self.store.patch_bucket(bucket, body, request.method == "PUT", _preconditions(request))
        return JSONResponse(self.store.bucket_resource(row, self._base_of(request)))

    async def delete_bucket(self, request: Request, bucket: str) -> Response:
        self.store.delete_bucket(bucket, _preconditions(request))
        return Response(status_code=204)

    # -- objects: metadata, list, delete, patch -----------------------------------------------------------------

    def _live_row(self, request: Request, bucket: str, name: str) -> sqlite3.Row:
        row = self.store.object_row(bucket, name)
        generation = _int_param(request, "generation")
        if generation is not None and generation != row["generation"]:
            raise NotFound(f"No such object: {bucket}/{name}#{generation}")
        check_preconditions(row, _preconditions(request), read=True)
        return row

    async def get_object(self, request: Request, bucket: str, object: str) -> Response:
        name = _object_name_from(request, object)
        if request.query_params.get("alt") == "media":
            return self._media(request, bucket, name)
        return JSONResponse(self.store.object_resource(self._live_row(request, bucket, name), self._base_of(request)))

    async def download_object(self, request: Request, bucket: str, object: str) -> Response:
        alt = request.query_params.get("alt", "media")
        if alt != "media":
            raise InvalidArgument(f"Invalid value for alt: {alt!r}; downloads need alt=media.")
        return self._media(request, bucket, _object_name_from(request, object))

    def _media(self, request: Request, bucket: str, name: str) -> Response:
        """The object's bytes; Starlette's FileResponse answers a single `Range` (206, or 416 when unsatisfiable)."""
        row = self._live_row(request, bucket, name)
        extra = json.loads(row["extra"])
        headers = {
            "content-type": row["content_type"],   # as stored: FileResponse would add a charset to its media_type
            "etag": etag(row["generation"], row["metageneration"]),
            "x-goog-generation": str(row["generation"]),
            "x-goog-metageneration": str(row["metageneration"]),
            "x-goog-hash": f"crc32c={row['crc32c']},md5={row['md5_hash']}",
            "x-goog-stored-content-length": str(row["size"]),
            "x-goog-stored-content-encoding": extra.get("contentEncoding") or "identity",
            "x-goog-storage-class": row["storage_class"],
            **{header: str(extra[key]) for key, header in _MEDIA_HEADERS.items() if extra.get(key)},
        }
        # Served from the file opened here (through /dev/fd), so a newer generation replacing it before the
        # response starts cannot cut the download.
        stream = open(self.store.root / row["blob_path"], "rb")
        response = FileResponse(f"/dev/fd/{stream.fileno()}", headers=headers, stat_result=os.fstat(stream.fileno()),
                                background=BackgroundTask(stream.close))
        response.chunk_size = IO_CHUNK
        return response

    async def list_objects(self, request: Request, bucket: str) -> Response:
        self.store.bucket_row(bucket)
        params = request.query_params
        if params.get("matchGlob"):
            raise Unimplemented("matchGlob is not implemented by the emulator.")
        limit = _max_results(request)
        after = after_key(request)  # [name, whether it is a prefix]
        if after is not None and not (isinstance(after, list) and len(after) == 2 and isinstance(after[0], str)):
            raise InvalidArgument("Invalid page token.")
        entries = self.store.iter_entries(
            bucket, params.get("prefix", ""), params.get("delimiter", ""), params.get("startOffset", ""),
            params.get("endOffset", ""), params.get("includeTrailingDelimiter", "").lower() == "true",
            after[0] if after else None, bool(after[1]) if after else False)
        items, prefixes, last = [], [], None
        base = self._base_of(request)
        more = False
        for count, (kind, value) in enumerate(entries):
            if count == limit:
                more = True
                break
            if kind == "item":
                items.append(self.store.object_resource(value, base))
                last = [value["name"], False]
            else:
                prefixes.append(value)
                last = [value, True]
        payload: dict[str, Any] = {"kind": "storage#objects"}
        if prefixes:
            payload["prefixes"] = prefixes
        if items:
            payload["items"] = items
        return JSONResponse(with_next_page(payload, last if more else None))

    async def delete_object(self, request: Request, bucket: str, object: str) -> Response:
        self.store.delete_object(bucket, _object_name_from(request, object), _int_param(request, "generation"),
                                 _preconditions(request))
        return Response(status_code=204)

    async def patch_object(self, request: Request, bucket: str, object: str) -> Response:
        name = _object_name_from(request, object)
        body = await read_json(request, _MAX_METADATA_BYTES)
        row = self.store.patch_object(bucket, name, body, request.method == "PUT", _int_param(request, "generation"),
                                      _preconditions(request))
        return JSONResponse(self.store.object_resource(row, self._base_of(request)))

    # -- uploads ----------------------------------------------------------------------------------------------

    def _new_object(self, request: Request, bucket: str, metadata: dict[str, Any],
                    content_type: str | None) -> NewObject:
        self.store.bucket_row(bucket)
        name = metadata.get("name") or request.query_params.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("Required: object name (the `name` field of the metadata or the `name` parameter).")
        validate_object_name(name)
        fields = {key: metadata[key] for key in OBJECT_WRITABLE if metadata.get(key) is not None}
        if "metadata" in fields:
            if not isinstance(fields["metadata"], dict):
                raise InvalidArgument("Invalid value for metadata: expected an object.")
            fields["metadata"] = {str(k): str(v) for k, v in fields["metadata"].items() if v is not None}
        if metadata.get("storageClass"):
            fields["storageClass"] = str(metadata["storageClass"]).upper()
        new = NewObject(bucket=bucket, name=name,
                        content_type=metadata.get("contentType") or content_type or "application/octet-stream",
                        fields=fields, preconditions=_preconditions(request),
                        expected_md5=metadata.get("md5Hash"), expected_crc32c=metadata.get("crc32c"))
        # Fail fast; checked again when committing.
        check_preconditions(self.store.live_object_row(bucket, name), new.preconditions)
        return new

    def _check_declared_size(self, request: Request, slack: int = 0) -> None:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.store.max_upload_bytes + slack:
            raise too_large(self._too_large(int(declared)))

    def _too_large(self, size: int | None = None) -> str:
        shown = f" of {size} bytes" if size is not None else ""
        return f"Upload{shown} exceeds the maximum object size of {self.store.max_upload_bytes} bytes."

    async def _stream_to_temp(self, chunks: AsyncIterator[bytes], temp: Path) -> tuple[int, str, str]:
        """Write chunks to `temp`; (size, md5 b64, crc32c b64). 413 past max_upload_bytes."""
        sink = Sink(temp)
        try:
            async for chunk in chunks:
                if sink.written + len(chunk) > self.store.max_upload_bytes:
                    raise too_large(self._too_large())
                await sink.write(chunk)
        except BaseException:
            await sink.close(sync=False)
            raise
        await sink.close()
        return sink.written, b64(sink.md5.digest()), crc32c_b64(sink.crc)

    async def insert_object(self, request: Request, bucket: str) -> Response:
        body = Body(request)
        temp: Path | None = None
        try:
            upload_type = request.query_params.get("uploadType", "media")
            if upload_type == "multipart":
                self._check_declared_size(request, slack=_MAX_METADATA_BYTES)
                new, temp, size, md5_b64, crc_b64 = await self._receive_multipart(request, bucket, body)
            elif upload_type == "media":
                self._check_declared_size(request)
                new = self._new_object(request, bucket, {}, request.headers.get("content-type"))
                temp = self.store.temp_path()
                size, md5_b64, crc_b64 = await self._stream_to_temp(body.chunks(), temp)
            elif upload_type == "resumable":
                return await self._start_resumable(request, bucket)
            else:
                raise InvalidArgument(f"Invalid upload type {upload_type!r}: expected media, multipart or resumable.")
            row = self.store.commit(new, temp, size, md5_b64, crc_b64)
            return JSONResponse(self.store.object_resource(row, self._base_of(request)))
        except GoogleApiError:
            await body.drain()
            raise
        except ClientDisconnect:
            return Response(status_code=499)
        finally:
            if temp is not None:
                temp.unlink(missing_ok=True)

    async def _receive_multipart(self, request: Request, bucket: str, body: Body
                                 ) -> tuple[NewObject, Path, int, str, str]:
        """The JSON metadata part, then the media part streamed to a temporary file."""
        content_type, options = parse_options_header(request.headers.get("content-type"))
        if content_type != b"multipart/related" or not options.get(b"boundary"):
            raise InvalidArgument("uploadType=multipart needs Content-Type: multipart/related; boundary=...")
        parts = related_parts(body.chunks(), options[b"boundary"])
        metadata = bytearray()
        async for number, headers, data in parts:
            if number > 1:
                break
            if not headers.get("content-type", "application/json").lower().startswith("application/json"):
                raise InvalidArgument("The first part of a multipart upload must be the JSON object metadata.")
            metadata += data
            if len(metadata) > _MAX_METADATA_BYTES:
                raise too_large(f"The metadata part exceeds {_MAX_METADATA_BYTES} bytes.")
        else:
            raise InvalidArgument("Multipart upload without a media part.")
        new = self._new_object(request, bucket, json_object(bytes(metadata)), headers.get("content-type"))

        async def media(first: bytes) -> AsyncIterator[bytes]:
            yield first
            async for number, _headers, data in parts:
                if number > 2:
                    raise InvalidArgument("A multipart upload has two parts: the JSON metadata, then the media.")
                yield data

        temp = self.store.temp_path()
        try:
            size, md5_b64, crc_b64 = await self._stream_to_temp(media(data), temp)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        await body.drain(64 * 1024)   # the epilogue, if any
        return new, temp, size, md5_b64, crc_b64

    async def _start_resumable(self, request: Request, bucket: str) -> Response:
        metadata = await read_json(request, _MAX_METADATA_BYTES)
        new = self._new_object(request, bucket, metadata, request.headers.get("x-upload-content-type"))
        declared = request.headers.get("x-upload-content-length")
        total = int(declared) if declared and declared.isdigit() else None
        if total is not None and total > self.store.max_upload_bytes:
            raise too_large(self._too_large(total))
        resource = dict(new.fields)
        for key in ("md5Hash", "crc32c"):
            if metadata.get(key):
                resource[key] = metadata[key]
        upload_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.store.upload_path(upload_id).touch()
        self.store.insert_upload(upload_id, new, resource, total)
        location = (f"{self._base_of(request)}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                    f"&name={quote(new.name, safe='')}&upload_id={upload_id}")
        return Response(status_code=200, headers={"location": location, "x-guploader-uploadid": upload_id,
                                                  "content-length": "0"})

    def _upload_lock(self, upload_id: str) -> asyncio.Lock:
        return self.store.upload_locks.setdefault(upload_id, asyncio.Lock())

    async def put_chunk(self, request: Request, bucket: str) -> Response:
        body = Body(request)
        try:
            upload_id = request.query_params.get("upload_id")
            if not upload_id:
                raise InvalidArgument("Missing upload_id: PUT needs the session URI returned by uploadType=resumable.")
            async with self._upload_lock(upload_id):
                return await self._receive_chunk(request, bucket, upload_id, body)
        except GoogleApiError:
            await body.drain()
            raise
        except ClientDisconnect:
            return Response(status_code=499)

    def _progress(self, upload: Upload) -> Response:
        headers = {"content-length": "0"}
        if upload.received:
            headers["range"] = f"bytes=0-{upload.received - 1}"
        return Response(status_code=308, headers=headers)

    def _finished(self, request: Request, upload: Upload) -> Response:
        row = self.store.live_object_row(upload.bucket, upload.name)
        if row is None or row["generation"] != upload.result_generation:
            raise NotFound(f"The object uploaded by session {upload.upload_id} no longer exists.")
        return JSONResponse(self.store.object_resource(row, self._base_of(request)))

    async def _receive_chunk(self, request: Request, bucket: str, upload_id: str, body: Body) -> Response:
        upload = self.store.load_upload(upload_id, bucket)
        if upload.result_generation is not None:
            await body.drain()
            return self._finished(request, upload)
        header = request.headers.get("content-range")
        if header is None:   # one PUT with the whole object
            first, last, total = 0, None, None
            if upload.received:
                self.store.hash_states.pop(upload_id, None)
                upload.received = 0
        else:
            first, last, total = parse_content_range(header)
        if total is not None:
            if total > self.store.max_upload_bytes:
                raise too_large(self._too_large(total))
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
                return await self._finalize(request, upload)
            return self._progress(upload)
        if first > upload.received:
            raise InvalidArgument(f"Invalid request. According to the Content-Range header, the upload offset is "
                                  f"{first} byte(s), which exceeds already uploaded size of {upload.received} byte(s).")
        expected = None if last is None else last - first + 1
        skip = upload.received - first   # bytes the server already has (a retried chunk)
        path = self.store.upload_path(upload_id)
        os.truncate(path, upload.received)   # drop bytes of a chunk that was cut short before being recorded
        state = self.store.hash_states.get(upload_id)
        if state is None or state.offset != upload.received:
            state = await anyio.to_thread.run_sync(self.store.rehash, path, upload.received)
        sink = Sink(path, offset=upload.received, md5=state.md5, crc=state.crc, create=False)
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
                if upload.received + sink.written + len(chunk) > self.store.max_upload_bytes:
                    raise too_large(self._too_large())
                await sink.write(chunk)
        finally:
            try:
                await sink.close(sync=False)
            finally:
                upload.received += sink.written
                self.store.hash_states[upload_id] = HashState(upload.received, sink.md5, sink.crc)
                self.store.record_received(upload_id, upload.received)
        if expected is not None and seen < expected:
            raise InvalidArgument(f"Request body has {seen} bytes; Content-Range {header!r} announced {expected}.")
        if header is None:
            total = upload.received
        if total is not None and upload.received >= total:
            return await self._finalize(request, upload, request.headers.get("x-goog-hash"))
        return self._progress(upload)

    async def _finalize(self, request: Request, upload: Upload, hash_header: str | None = None) -> Response:
        path = self.store.upload_path(upload.upload_id)
        state = self.store.hash_states.get(upload.upload_id)
        if state is None or state.offset != upload.received:
            state = await anyio.to_thread.run_sync(self.store.rehash, path, upload.received)
        md5_b64, crc_b64 = b64(state.md5.digest()), crc32c_b64(state.crc)
        resource = dict(upload.resource)
        expected_md5, expected_crc = resource.pop("md5Hash", None), resource.pop("crc32c", None)
        for item in (hash_header or "").split(","):
            kind, _, value = item.strip().partition("=")
            if kind == "md5" and value:
                expected_md5 = value
            elif kind == "crc32c" and value:
                expected_crc = value
        new = NewObject(bucket=upload.bucket, name=upload.name, content_type=upload.content_type, fields=resource,
                        preconditions=upload.preconditions, expected_md5=expected_md5, expected_crc32c=expected_crc)
        await anyio.to_thread.run_sync(fsync_path, path)
        try:
            row = self.store.commit(new, path, upload.received, md5_b64, crc_b64)
        except GoogleApiError:
            self.store.drop_upload(upload.upload_id)   # a failed finalisation ends the session, as in GCS
            raise
        self.store.finish_upload(upload.upload_id, row["generation"])
        return JSONResponse(self.store.object_resource(row, self._base_of(request)))

    async def cancel_upload(self, request: Request, bucket: str) -> Response:
        upload_id = request.query_params.get("upload_id")
        if not upload_id:
            raise InvalidArgument("Missing upload_id.")
        self.store.load_upload(upload_id, bucket)
        self.store.drop_upload(upload_id)
        raise Cancelled("Upload cancelled by the client.")


def gcs_routes(store: ObjectStore) -> list[ApiRoute]:
    """The GCS JSON API routes served from `store`."""
    return GcsApi(store).routes()

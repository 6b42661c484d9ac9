"""The GCS JSON API route table and its handlers: parse the request, call the ObjectStore, serialize.

Routes (JSON API v1; `{object=**}` is the URL-encoded object name, re-read from the raw request path):

    POST   /storage/v1/b?project=                         buckets.insert
    GET    /storage/v1/b?project=&prefix=&maxResults=&pageToken=   buckets.list
    GET    /storage/v1/b/{bucket}                         buckets.get
    PATCH  /storage/v1/b/{bucket}  (PUT: update)          buckets.patch (labels and other writable fields)
    DELETE /storage/v1/b/{bucket}                         buckets.delete (409 while it holds objects)
    POST   /upload/storage/v1/b/{bucket}/o?uploadType=multipart|media|resumable   objects.insert
    PUT    /upload/storage/v1/b/{bucket}/o?upload_id=     resumable chunks (`Content-Range`, 308 + `Range`)
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
import sqlite3
import uuid
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable
from urllib.parse import quote

import anyio
from python_multipart.multipart import parse_options_header
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from emulator.errors import GoogleApiError, InvalidArgument, Unimplemented, too_large
from emulator.gcs.names import validate_object_name
from emulator.gcs.store import NewObject, ObjectStore, Upload, check_preconditions, etag
from emulator.gcs.streams import IO_CHUNK, Hashes, Sink, content_range, drain, fsync_path, hashes_of, related_parts
from emulator.paging import after_key, with_next_page
from emulator.requests import json_object, read_json
from emulator.routes import ApiRoute, route

_MAX_METADATA_BYTES = 1024 * 1024  # JSON metadata of an upload, buckets.insert bodies
_MAX_PAGE = 1000
_MEDIA_HEADERS = {"cacheControl": "cache-control", "contentDisposition": "content-disposition",
                  "contentLanguage": "content-language", "contentEncoding": "content-encoding"}


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
    if value is not None and value < 1:
        raise InvalidArgument("maxResults must be a positive integer.")
    return min(value or _MAX_PAGE, _MAX_PAGE)


def _base(request: Request) -> str:
    """The URL the client reached us at, for selfLink, mediaLink and session URIs."""
    return str(request.base_url).rstrip("/")


def _listing(kind: str, last: Any, **lists: list[Any]) -> Response:
    """A list answer: its non-empty lists (GCS leaves empty ones out), and a nextPageToken when more remain."""
    return JSONResponse(with_next_page({"kind": kind, **{key: value for key, value in lists.items() if value}}, last))


async def _receiving(body: AsyncIterator[bytes], receive: Awaitable[Response]) -> Response:
    """`receive`'s answer; on an error, the rest of the body is read first (so the client sees the answer), and
    a client that went away gets 499."""
    try:
        return await receive
    except GoogleApiError:
        await drain(body)
        raise
    except ClientDisconnect:
        return Response(status_code=499)


@dataclass
class GcsApi:
    """Handlers of the bucket, object and upload routes, served from one ObjectStore."""

    store: ObjectStore

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
        ]

    def _object_answer(self, request: Request, row: sqlite3.Row) -> Response:
        return JSONResponse(self.store.object_resource(row, _base(request)))

    # -- buckets ----------------------------------------------------------------------------------------------

    async def insert_bucket(self, request: Request) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        row = self.store.create_bucket(request.query_params.get("project") or self.store.project, body)
        return JSONResponse(self.store.bucket_resource(row, _base(request)))

    async def list_buckets(self, request: Request) -> Response:
        project = request.query_params.get("project") or self.store.project
        rows, last = self.store.list_buckets(project, request.query_params.get("prefix", ""), _max_results(request),
                                             after_key(request))
        base = _base(request)
        return _listing("storage#buckets", last, items=[self.store.bucket_resource(row, base) for row in rows])

    async def get_bucket(self, request: Request, bucket: str) -> Response:
        row = self.store.bucket_row(bucket)
        check_preconditions(row, _preconditions(request), read=True)
        return JSONResponse(self.store.bucket_resource(row, _base(request)))

    async def patch_bucket(self, request: Request, bucket: str) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        row = self.store.patch_bucket(bucket, body, request.method == "PUT", _preconditions(request))
        return JSONResponse(self.store.bucket_resource(row, _base(request)))

    async def delete_bucket(self, request: Request, bucket: str) -> Response:
        self.store.delete_bucket(bucket, _preconditions(request))
        return Response(status_code=204)

    # -- objects: metadata, media, list, delete, patch ------------------------------------------------------------

    def _live_row(self, request: Request, bucket: str, name: str) -> sqlite3.Row:
        row = self.store.object_row(bucket, name, _int_param(request, "generation"))
        check_preconditions(row, _preconditions(request), read=True)
        return row

    async def get_object(self, request: Request, bucket: str, object: str) -> Response:
        if request.query_params.get("alt") == "media":
            return self._media(request, bucket, object)
        return self._object_answer(request, self._live_row(request, bucket, object))

    async def download_object(self, request: Request, bucket: str, object: str) -> Response:
        alt = request.query_params.get("alt", "media")
        if alt != "media":
            raise InvalidArgument(f"Invalid value for alt: {alt!r}; downloads need alt=media.")
        return self._media(request, bucket, object)

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
        entries = list(islice(self.store.iter_entries(
            bucket, params.get("prefix", ""), params.get("delimiter", ""), params.get("startOffset", ""),
            params.get("endOffset", ""), params.get("includeTrailingDelimiter", "").lower() == "true",
            (after[0], bool(after[1])) if after else None), limit + 1))
        page, base = entries[:limit], _base(request)
        last = [page[-1][0], page[-1][1] is None] if len(entries) > limit else None
        return _listing("storage#objects", last, prefixes=[name for name, row in page if row is None],
                        items=[self.store.object_resource(row, base) for _name, row in page if row is not None])

    async def delete_object(self, request: Request, bucket: str, object: str) -> Response:
        self.store.delete_object(bucket, object, _int_param(request, "generation"), _preconditions(request))
        return Response(status_code=204)

    async def patch_object(self, request: Request, bucket: str, object: str) -> Response:
        body = await read_json(request, _MAX_METADATA_BYTES)
        return self._object_answer(request, self.store.patch_object(
            bucket, object, body, request.method == "PUT", _int_param(request, "generation"), _preconditions(request)))

    # -- uploads ----------------------------------------------------------------------------------------------

    def _new_object(self, request: Request, bucket: str, metadata: dict[str, Any],
                    content_type: str | None) -> NewObject:
        self.store.bucket_row(bucket)
        name = metadata.get("name") or request.query_params.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("Required: object name (the `name` field of the metadata or the `name` parameter).")
        validate_object_name(name)
        new = NewObject.from_metadata(bucket, name, metadata, content_type, _preconditions(request))
        # Fail fast; checked again when committing.
        check_preconditions(self.store.live_object_row(bucket, name), new.preconditions)
        return new

    def _check_size(self, size: int | str | None, slack: int = 0) -> None:
        """413 when `size` (a number, or a header that may hold one) is over the maximum object size."""
        if size is not None and str(size).isdigit() and int(size) > self.store.max_upload_bytes + slack:
            raise too_large(f"Upload of {size} bytes exceeds the maximum object size of "
                            f"{self.store.max_upload_bytes} bytes.")

    def _too_large(self) -> GoogleApiError:
        return too_large(f"Upload exceeds the maximum object size of {self.store.max_upload_bytes} bytes.")

    async def _stream_to_temp(self, chunks: AsyncIterator[bytes]) -> tuple[Path, Hashes]:
        """Write chunks to a new temporary file: its path and Hashes. 413 past max_upload_bytes."""
        temp = self.store.temp_path()
        sink = Sink(temp)
        try:
            async for chunk in chunks:
                if sink.written + len(chunk) > self.store.max_upload_bytes:
                    raise self._too_large()
                await sink.write(chunk)
        except BaseException:
            await sink.close(sync=False)
            temp.unlink(missing_ok=True)
            raise
        await sink.close()
        return temp, sink.hashes

    async def insert_object(self, request: Request, bucket: str) -> Response:
        body = request.stream()
        return await _receiving(body, self._insert(request, bucket, body))

    async def _insert(self, request: Request, bucket: str, body: AsyncIterator[bytes]) -> Response:
        upload_type = request.query_params.get("uploadType", "media")
        if upload_type == "resumable":
            return await self._start_resumable(request, bucket)
        if upload_type == "multipart":
            self._check_size(request.headers.get("content-length"), slack=_MAX_METADATA_BYTES)
            new, (temp, hashes) = await self._receive_multipart(request, bucket, body)
        elif upload_type == "media":
            self._check_size(request.headers.get("content-length"))
            new = self._new_object(request, bucket, {}, request.headers.get("content-type"))
            temp, hashes = await self._stream_to_temp(body)
        else:
            raise InvalidArgument(f"Invalid upload type {upload_type!r}: expected media, multipart or resumable.")
        try:
            return self._object_answer(request, self.store.commit(new, temp, hashes))
        finally:
            temp.unlink(missing_ok=True)

    async def _receive_multipart(self, request: Request, bucket: str, body: AsyncIterator[bytes]
                                 ) -> tuple[NewObject, tuple[Path, Hashes]]:
        """The JSON metadata part, then the media part streamed to a temporary file."""
        content_type, options = parse_options_header(request.headers.get("content-type"))
        if content_type != b"multipart/related" or not options.get(b"boundary"):
            raise InvalidArgument("uploadType=multipart needs Content-Type: multipart/related; boundary=...")
        parts = related_parts(body, options[b"boundary"])
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

        received = await self._stream_to_temp(media(data))
        await drain(body, 64 * 1024)   # the epilogue, if any
        return new, received

    async def _start_resumable(self, request: Request, bucket: str) -> Response:
        metadata = await read_json(request, _MAX_METADATA_BYTES)
        new = self._new_object(request, bucket, metadata, request.headers.get("x-upload-content-type"))
        declared = request.headers.get("x-upload-content-length")
        self._check_size(declared)
        upload_id = uuid.uuid4().hex + uuid.uuid4().hex
        self.store.upload_path(upload_id).touch()
        self.store.insert_upload(upload_id, new, int(declared) if declared and declared.isdigit() else None)
        location = (f"{_base(request)}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                    f"&name={quote(new.name, safe='')}&upload_id={upload_id}")
        return Response(status_code=200, headers={"location": location, "x-guploader-uploadid": upload_id,
                                                  "content-length": "0"})

    async def put_chunk(self, request: Request, bucket: str) -> Response:
        upload_id = request.query_params.get("upload_id")
        body = request.stream()
        if not upload_id:
            await drain(body)
            raise InvalidArgument("Missing upload_id: PUT needs the session URI returned by uploadType=resumable.")
        async with self.store.upload_locks.setdefault(upload_id, asyncio.Lock()):
            return await _receiving(body, self._receive_chunk(request, bucket, upload_id, body))

    def _progress(self, upload: Upload) -> Response:
        headers = {"content-length": "0"} | ({"range": f"bytes=0-{upload.received - 1}"} if upload.received else {})
        return Response(status_code=308, headers=headers)

    async def _hashes(self, upload: Upload) -> Hashes:
        """The Hashes of the bytes received so far: kept from the last chunk, or read again from the file."""
        hashes = self.store.hash_states.get(upload.upload_id)
        if hashes is None or hashes.size != upload.received:
            hashes = await anyio.to_thread.run_sync(hashes_of, self.store.upload_path(upload.upload_id),
                                                    upload.received)
        return hashes

    async def _receive_chunk(self, request: Request, bucket: str, upload_id: str, body: AsyncIterator[bytes]
                             ) -> Response:
        upload = self.store.load_upload(upload_id, bucket)
        if upload.result_generation is not None:   # a retried final chunk: the object it made
            await drain(body)
            return self._object_answer(request, self.store.object_row(upload.bucket, upload.name,
                                                                      upload.result_generation))
        header = request.headers.get("content-range")
        if header is None:   # one PUT with the whole object
            first, last, total = 0, None, None
            upload.received = 0
        else:
            first, last, total = content_range(header)
        if total is not None:
            self._check_size(total)
            if upload.total_size is not None and total != upload.total_size:
                raise InvalidArgument(f"Content-Range total {total} differs from the declared size "
                                      f"{upload.total_size} of the upload.")
            if last is not None and last >= total:
                raise InvalidArgument(f"Invalid Content-Range header {header!r}: range past the total size.")
            if total < upload.received:
                raise InvalidArgument(f"Content-Range total {total} is below the {upload.received} bytes received.")
        if first is None:   # status query or finalisation without bytes
            await drain(body)
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
        sink, seen = Sink(path, await self._hashes(upload)), 0
        try:
            async for chunk in body:
                if expected is not None and seen + len(chunk) > expected:
                    raise InvalidArgument(f"Request body is longer than the {expected} bytes of Content-Range "
                                          f"{header!r}.")
                seen += len(chunk)
                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                if upload.received + sink.written + len(chunk) > self.store.max_upload_bytes:
                    raise self._too_large()
                await sink.write(chunk)
        finally:
            try:
                await sink.close(sync=False)
            finally:
                upload.received = sink.hashes.size
                self.store.hash_states[upload_id] = sink.hashes
                self.store.record_received(upload_id, upload.received)
        if expected is not None and seen < expected:
            raise InvalidArgument(f"Request body has {seen} bytes; Content-Range {header!r} announced {expected}.")
        total = upload.received if header is None else total
        if total is not None and upload.received >= total:
            return await self._finalize(request, upload, request.headers.get("x-goog-hash"))
        return self._progress(upload)

    async def _finalize(self, request: Request, upload: Upload, hash_header: str | None = None) -> Response:
        hashes = await self._hashes(upload)
        for item in (hash_header or "").split(","):   # the final chunk's `x-goog-hash` overrides the metadata's
            kind, _, value = item.strip().partition("=")
            if kind in ("md5", "crc32c") and value:
                setattr(upload, f"expected_{kind}", value)
        path = self.store.upload_path(upload.upload_id)
        await anyio.to_thread.run_sync(fsync_path, path)
        try:
            row = self.store.commit(upload, path, hashes)
        except GoogleApiError:
            self.store.drop_upload(upload.upload_id)   # a failed finalisation ends the session, as in GCS
            raise
        self.store.finish_upload(upload.upload_id, row["generation"])
        return self._object_answer(request, row)


def gcs_routes(store: ObjectStore) -> list[ApiRoute]:
    """The GCS JSON API routes served from `store`."""
    return GcsApi(store).routes()

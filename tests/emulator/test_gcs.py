"""The GCS emulator driven by the unmodified google-cloud-storage client (STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
import tracemalloc
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import google_crc32c
import pytest
import requests
import uvicorn
from google.api_core import exceptions
from google.cloud import storage

from emulator.db import Database
from emulator.gcs import ObjectStore, gcs_routes
from emulator.routes import api_app

PROJECT = "test-project"
MAX_UPLOAD = 300 * 1024 * 1024


@dataclass
class Served:
    url: str
    store: ObjectStore
    data_dir: Path
    calls: list[tuple[str, str, str, int]]   # (method, path, query, status) of every request served

    def uploads(self, upload_type: str) -> list[tuple[str, str, str, int]]:
        return [call for call in self.calls if call[1].startswith("/upload/") and
                (f"uploadType={upload_type}" in call[2] or (upload_type == "resumable" and call[0] == "PUT"))]


def make_store(data_dir: Path, max_upload_bytes: int = MAX_UPLOAD) -> ObjectStore:
    return ObjectStore(Database(data_dir / "state.sqlite3"), data_dir / "objects", max_upload_bytes)


@contextmanager
def serve(store: ObjectStore, data_dir: Path) -> Iterator[Served]:
    """The GCS routes in a Starlette app served by uvicorn on a free port, in a thread."""
    calls: list[tuple[str, str, str, int]] = []
    gcs = api_app(gcs_routes(store))

    async def app(scope, receive, send):  # records each request's status as it is sent
        async def recording_send(message):
            if message["type"] == "http.response.start":
                calls.append((scope["method"], scope["path"], scope["query_string"].decode(), message["status"]))
            await send(message)

        await gcs(scope, receive, recording_send if scope["type"] == "http" else send)

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                          lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}", store, data_dir, calls)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with serve(make_store(tmp_path), tmp_path) as running:
        yield running


@pytest.fixture
def client(served: Served, monkeypatch: pytest.MonkeyPatch) -> storage.Client:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", served.url)
    return storage.Client(project=PROJECT)


@pytest.fixture
def bucket(client: storage.Client) -> storage.Bucket:
    return client.create_bucket("test-bucket")


def b64_md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def b64_crc32c(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


def write_file(path: Path, size: int, seed: int = 0) -> bytes | None:
    """A file of `size` bytes; returns its content when small enough to compare in memory."""
    block = hashlib.sha256(str(seed).encode()).digest() * 32768   # 1 MiB of pseudo-random bytes
    with open(path, "wb") as stream:
        left = size
        while left > 0:
            stream.write(block[:min(len(block), left)])
            left -= len(block)
    return path.read_bytes() if size <= 16 * 1024 * 1024 else None


# -- buckets ----------------------------------------------------------------------------------------------------


def test_create_and_get_bucket(client: storage.Client) -> None:
    created = client.create_bucket("my-bucket", location="europe-west4")
    fetched = client.get_bucket("my-bucket")
    assert created.name == fetched.name == "my-bucket"
    assert fetched.location == "EUROPE-WEST4"
    assert fetched.storage_class == "STANDARD"
    assert fetched.metageneration == 1
    assert fetched.project_number is not None


def test_list_buckets(client: storage.Client) -> None:
    for name in ("bucket-b", "bucket-a", "other-c"):
        client.create_bucket(name)
    assert [b.name for b in client.list_buckets()] == ["bucket-a", "bucket-b", "other-c"]
    assert [b.name for b in client.list_buckets(prefix="bucket-")] == ["bucket-a", "bucket-b"]
    assert [b.name for b in client.list_buckets(max_results=2, page_size=1)] == ["bucket-a", "bucket-b"]


def test_create_existing_bucket_conflicts(client: storage.Client, bucket: storage.Bucket) -> None:
    with pytest.raises(exceptions.Conflict):
        client.create_bucket(bucket.name)


def test_patch_bucket_labels(bucket: storage.Bucket) -> None:
    bucket.labels = {"team": "ml"}
    bucket.patch()
    bucket.reload()
    assert bucket.labels == {"team": "ml"}
    assert bucket.metageneration == 2


def test_bucket_metageneration_preconditions(served: Served, bucket: storage.Bucket) -> None:
    url = f"{served.url}/storage/v1/b/{bucket.name}"
    assert requests.get(url, params={"ifMetagenerationMatch": 1}).ok
    assert requests.get(url, params={"ifMetagenerationMatch": 2}).status_code == 412
    assert requests.get(url, params={"ifMetagenerationNotMatch": 1}).status_code == 304   # a read: not modified
    assert requests.patch(url, params={"ifMetagenerationNotMatch": 1}, json={"labels": {"a": "b"}}).status_code == 412
    assert requests.patch(url, params={"ifMetagenerationMatch": 1}, json={"labels": {"a": "b"}}).json()[
        "metageneration"] == "2"


def test_bad_bucket_name_is_rejected_with_the_rule(client: storage.Client) -> None:
    with pytest.raises(exceptions.BadRequest) as caught:
        client.create_bucket("Bad_Name")
    assert "only lowercase letters" in caught.value.message


def test_delete_non_empty_bucket_conflicts(bucket: storage.Bucket) -> None:
    bucket.blob("keep.txt").upload_from_string(b"x")
    with pytest.raises(exceptions.Conflict) as caught:
        bucket.delete()
    assert "not empty" in caught.value.message


def test_delete_empty_bucket(client: storage.Client, bucket: storage.Bucket) -> None:
    bucket.delete()
    assert client.lookup_bucket(bucket.name) is None


# -- uploads and downloads ----------------------------------------------------------------------------------------


def test_upload_from_string_multipart_round_trip(bucket: storage.Bucket) -> None:
    blob = bucket.blob("dir/hello.txt")
    blob.upload_from_string(b"hello, world", content_type="text/plain")
    assert blob.size == 12
    assert bucket.blob("dir/hello.txt").download_as_bytes() == b"hello, world"


def test_upload_from_filename_with_chunk_size_round_trip(served: Served, bucket: storage.Bucket,
                                                         tmp_path: Path) -> None:
    source = tmp_path / "train.jsonl"
    data = write_file(source, 1024 * 1024 + 12345)
    blob = bucket.blob("data/train.jsonl", chunk_size=256 * 1024)
    blob.upload_from_filename(source)
    assert blob.size == len(data)
    assert bucket.blob("data/train.jsonl").download_as_bytes() == data
    # google-cloud-storage 3.x picks multipart for any known size <= 8 MiB, whatever the chunk_size.
    assert len(served.uploads("multipart")) == 1 and not served.uploads("resumable")


def test_resumable_upload_in_256k_chunks(served: Served, bucket: storage.Bucket, tmp_path: Path) -> None:
    source = tmp_path / "train.jsonl"
    data = write_file(source, 1024 * 1024 + 12345)
    blob = bucket.blob("data/train.jsonl", chunk_size=256 * 1024)
    with open(source, "rb") as stream:
        blob.upload_from_file(stream)   # no size given: the client uses a resumable upload
    assert blob.size == len(data)       # and it checked the crc32c of the final response
    statuses = [status for _method, _path, _query, status in served.uploads("resumable")]
    assert statuses == [200, 308, 308, 308, 308, 200]   # initiation, 4 full chunks with Range, last chunk
    assert bucket.blob("data/train.jsonl").download_as_bytes() == data


def test_download_to_filename(bucket: storage.Bucket, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    bucket.blob("bin/random.bin").upload_from_string(data, content_type="application/octet-stream")
    target = tmp_path / "out.bin"
    bucket.blob("bin/random.bin").download_to_filename(target)
    assert target.read_bytes() == data


def test_download_byte_ranges(bucket: storage.Bucket) -> None:
    data = bytes(range(256)) * 40
    bucket.blob("r.bin").upload_from_string(data)
    blob = bucket.blob("r.bin")
    assert blob.download_as_bytes(start=100, end=199) == data[100:200]
    assert blob.download_as_bytes(start=10_000) == data[10_000:]
    assert blob.download_as_bytes(start=0) == data


def test_reload_metadata_matches_client_checksums(bucket: storage.Bucket) -> None:
    data = b"line one\nline two\n" * 1000
    bucket.blob("meta.txt").upload_from_string(data, content_type="text/plain")
    blob = bucket.blob("meta.txt")
    blob.reload()
    assert blob.size == len(data)
    assert blob.md5_hash == b64_md5(data)
    assert blob.crc32c == b64_crc32c(data)
    assert blob.content_type == "text/plain"
    assert blob.generation and blob.metageneration == 1


def test_list_blobs_with_prefix_and_delimiter(bucket: storage.Bucket) -> None:
    for name in ("a/1.txt", "a/2.txt", "a/sub/3.txt", "a/sub/4.txt", "a/zz/5.txt", "b/6.txt", "top.txt"):
        bucket.blob(name).upload_from_string(name.encode())
    assert [b.name for b in bucket.list_blobs(prefix="a/")] == [
        "a/1.txt", "a/2.txt", "a/sub/3.txt", "a/sub/4.txt", "a/zz/5.txt"]
    listing = bucket.list_blobs(prefix="a/", delimiter="/")
    assert [b.name for b in listing] == ["a/1.txt", "a/2.txt"]
    assert listing.prefixes == {"a/sub/", "a/zz/"}
    root = bucket.list_blobs(delimiter="/", page_size=1)   # pagination across items and prefixes
    assert [b.name for b in root] == ["top.txt"]
    assert root.prefixes == {"a/", "b/"}


def test_delete_blob(bucket: storage.Bucket) -> None:
    blob = bucket.blob("gone.txt")
    blob.upload_from_string(b"bye")
    blob.delete()
    assert not bucket.blob("gone.txt").exists()
    assert list(bucket.list_blobs()) == []


def test_get_missing_object_is_not_found(bucket: storage.Bucket) -> None:
    with pytest.raises(exceptions.NotFound):
        bucket.blob("missing.txt").reload()
    with pytest.raises(exceptions.NotFound):
        bucket.blob("missing.txt").download_as_bytes()


def test_upload_over_max_upload_bytes_is_rejected(served: Served, bucket: storage.Bucket,
                                                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(served.store, "max_upload_bytes", 1000)
    with pytest.raises(exceptions.GoogleAPICallError) as multipart:
        bucket.blob("big.bin").upload_from_string(b"x" * 1001)
    assert multipart.value.code == 413
    source = tmp_path / "big.bin"
    write_file(source, 512 * 1024)
    with pytest.raises(exceptions.GoogleAPICallError) as resumable, open(source, "rb") as stream:
        bucket.blob("big2.bin", chunk_size=256 * 1024).upload_from_file(stream)   # resumable
    assert resumable.value.code == 413
    assert served.uploads("resumable")[-1][3] == 413
    assert not list(bucket.list_blobs())


def test_if_generation_match_zero_on_existing_object_fails(bucket: storage.Bucket) -> None:
    bucket.blob("once.txt").upload_from_string(b"first", if_generation_match=0)
    with pytest.raises(exceptions.PreconditionFailed):
        bucket.blob("once.txt").upload_from_string(b"second", if_generation_match=0)
    assert bucket.blob("once.txt").download_as_bytes() == b"first"


def test_overwrite_increments_generation(bucket: storage.Bucket) -> None:
    first = bucket.blob("v.txt")
    first.upload_from_string(b"one")
    second = bucket.blob("v.txt")
    second.upload_from_string(b"two")
    assert second.generation > first.generation
    assert bucket.blob("v.txt").download_as_bytes() == b"two"


def test_path_traversal_names_stay_under_root(served: Served, bucket: storage.Bucket) -> None:
    name = "../../etc/passwd"
    bucket.blob(name).upload_from_string(b"not really")
    assert bucket.blob(name).download_as_bytes() == b"not really"
    assert [b.name for b in bucket.list_blobs()] == [name]
    root = served.store.root
    files = [p for p in root.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].resolve().is_relative_to(root)
    assert "passwd" not in str(files[0]) and not (served.data_dir.parent / "etc").exists()


def test_odd_object_names_round_trip(bucket: storage.Bucket) -> None:
    for name in ("with space/and?query#hash", "100%2F literal", "ünïcødé/名前.txt", "/leading-slash"):
        bucket.blob(name).upload_from_string(name.encode())
        assert bucket.blob(name).download_as_bytes() == name.encode()
        assert bucket.get_blob(name).name == name


def test_restart_keeps_buckets_and_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(make_store(tmp_path), tmp_path) as first:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", first.url)
        storage.Client(project=PROJECT).create_bucket("durable").blob("x/y.txt").upload_from_string(b"kept")
    with serve(make_store(tmp_path), tmp_path) as second:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", second.url)
        client = storage.Client(project=PROJECT)
        assert [b.name for b in client.list_buckets()] == ["durable"]
        assert client.bucket("durable").blob("x/y.txt").download_as_bytes() == b"kept"
        assert second.store.object_metadata("durable", "x/y.txt")["size"] == "4"


def test_store_api_for_the_vertex_side(served: Served, bucket: storage.Bucket) -> None:
    bucket.blob("ds/train.jsonl").upload_from_string(b'{"a": 1}\n')
    store = served.store
    assert store.bucket_exists("test-bucket") and not store.bucket_exists("nope-bucket")
    assert ObjectStore.parse_gs_uri("gs://test-bucket/ds/train.jsonl") == ("test-bucket", "ds/train.jsonl")
    with store.open_object("test-bucket", "ds/train.jsonl") as stream:
        assert stream.read() == b'{"a": 1}\n'
    assert store.object_metadata("test-bucket", "ds/train.jsonl")["kind"] == "storage#object"
    from emulator.errors import InvalidArgument, NotFound
    with pytest.raises(InvalidArgument):
        ObjectStore.parse_gs_uri("https://storage.googleapis.com/test-bucket/x")
    with pytest.raises(NotFound):
        store.open_object("test-bucket", "missing")
    store.reset()
    assert not store.bucket_exists("test-bucket")


def test_resumable_session_status_query_and_unknown_route(served: Served, bucket: storage.Bucket) -> None:
    """Raw protocol: a `bytes */*` status query reports the persisted range; unknown routes answer 501."""
    start = requests.post(f"{served.url}/upload/storage/v1/b/test-bucket/o?uploadType=resumable",
                          json={"name": "raw.bin"}, headers={"x-upload-content-type": "application/octet-stream"})
    session = start.headers["location"]
    chunk = requests.put(session, data=b"a" * 1000, headers={"content-range": "bytes 0-999/*"})
    assert chunk.status_code == 308 and chunk.headers["range"] == "bytes=0-999"
    status = requests.put(session, headers={"content-range": "bytes */*"})
    assert status.status_code == 308 and status.headers["range"] == "bytes=0-999"
    final = requests.put(session, data=b"b" * 10, headers={"content-range": "bytes 1000-1009/1010"})
    assert final.status_code == 200 and final.json()["size"] == "1010"
    assert requests.post(f"{served.url}/storage/v1/b/test-bucket/o/raw.bin/compose").status_code == 501


# -- memory ---------------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_large_resumable_upload_keeps_memory_flat(served: Served, bucket: storage.Bucket, tmp_path: Path) -> None:
    size = 200 * 1024 * 1024
    source = tmp_path / "large.bin"
    with open(source, "wb") as stream:   # sparse-ish: zeros with a marker per MiB
        for index in range(size // (1024 * 1024)):
            stream.write(index.to_bytes(8, "big") + bytes(1024 * 1024 - 8))
    blob = bucket.blob("large.bin", chunk_size=8 * 1024 * 1024)
    tracemalloc.start()
    try:
        blob.upload_from_filename(source)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.size == size
    assert len(served.uploads("resumable")) == 1 + 25
    # The client's own 8 MiB chunk buffers are counted too: the server side must add little to that.
    assert peak < 100 * 1024 * 1024, f"peak traced memory {peak / 2**20:.1f} MiB"

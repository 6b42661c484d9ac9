"""Probe the pinned fake-gcs-server for the Cloud Storage behaviours this project relies on; print PASS/FAIL each.

Usage: venv/bin/python tools/fake-gcs/trial.py   (builds the binary with tools/fake-gcs/build.sh first)

Issue 11 tried fake-gcs-server as the emulator's GCS part and kept our own (emulator/gcs) because of the
failures this script shows; rerun it on a new version before trying again.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

HERE = Path(__file__).resolve().parent
results: list[tuple[bool, str, str]] = []


def check(ok: bool, behaviour: str, got: object) -> None:
    results.append((ok, behaviour, str(got)))


def serve(binary: str, root: Path, port: int) -> subprocess.Popen:
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                                "-backend", "filesystem", "-filesystem-root", str(root / "fs"),
                                "-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "error"])
    for _ in range(200):
        try:
            requests.get(f"{url}/_internal/healthcheck", timeout=1)
            return process
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("fake-gcs-server did not start")


def session(url: str, name: str, **params: str) -> requests.Response:
    return requests.post(f"{url}/upload/storage/v1/b/bkt/o", params={"uploadType": "resumable", **params},
                         json={"name": name}, timeout=30)


def probe(url: str, root: Path) -> None:
    client = storage.Client(project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})
    bucket = client.bucket("bkt")
    bucket.labels = {"team": "ml"}
    client.create_bucket(bucket, location="EUROPE-WEST4")
    got = client.get_bucket("bkt")
    check(got.location == "EUROPE-WEST4", "buckets.insert keeps the requested location", got.location)
    check(got.labels == {"team": "ml"}, "buckets.insert keeps labels", got.labels)
    got.labels = {"team": "nlp"}
    got.patch()
    check(client.get_bucket("bkt").labels == {"team": "nlp"}, "buckets.patch sets labels",
          client.get_bucket("bkt").labels)

    blob = bucket.blob("ds/train.jsonl")
    blob.upload_from_string(b"0123456789" * 100, if_generation_match=0)
    try:
        bucket.blob("ds/train.jsonl").upload_from_string(b"other", if_generation_match=0)
        check(False, "multipart upload with ifGenerationMatch=0 on an existing object: 412", "200")
    except Exception as error:  # noqa: BLE001 - reported
        check(getattr(error, "code", None) == 412, "multipart upload with ifGenerationMatch=0 on an existing object: "
              "412", type(error).__name__)
    ranged = bucket.blob("ds/train.jsonl").download_as_bytes(start=10, end=19)
    check(ranged == b"0123456789", "ranged read (Range: bytes=10-19)", ranged)
    for name in ("a/1", "a/2", "a/b/3", "c/4"):
        bucket.blob(name).upload_from_string(b"x")
    listing = bucket.list_blobs(prefix="a/", delimiter="/")
    names = [item.name for item in listing]
    check(names == ["a/1", "a/2"] and listing.prefixes == {"a/b/"}, "list with prefix and delimiter",
          (names, listing.prefixes))

    start = session(url, "retried.bin").headers["location"]
    requests.put(start, data=b"a" * 1000, headers={"content-range": "bytes 0-999/2000"}, timeout=30)
    requests.put(start, data=b"a" * 1000, headers={"content-range": "bytes 0-999/2000"}, timeout=30)  # lost answer
    last = requests.put(start, data=b"b" * 1000, headers={"content-range": "bytes 1000-1999/2000"}, timeout=30)
    check(last.ok and last.json()["size"] == "2000", "resumable: a chunk sent again after its answer was lost is "
          "stored once (2000 bytes)", last.json().get("size"))

    start = session(url, "queried.bin").headers["location"]
    requests.put(start, data=b"a" * 1000, headers={"content-range": "bytes 0-999/*"}, timeout=30)
    status = requests.put(start, headers={"content-range": "bytes */*"}, timeout=30)
    check((status.status_code, status.headers.get("range")) == (308, "bytes=0-999"),
          "resumable: status query `bytes */*` answers 308 with Range bytes=0-999 and stores nothing",
          (status.status_code, status.headers.get("range"),
           requests.get(f"{url}/storage/v1/b/bkt/o/queried.bin", timeout=30).status_code))

    started = session(url, "ds/train.jsonl", ifGenerationMatch="0")
    chunk = requests.put(started.headers["location"], data=b"x", headers={"content-range": "bytes 0-0/1"}, timeout=30)
    check(412 in (started.status_code, chunk.status_code), "resumable upload with ifGenerationMatch=0 on an "
          "existing object: 412", (started.status_code, chunk.status_code))

    bucket.blob("../../escaped").upload_from_string(b"x")
    outside = [str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()
               and not path.resolve().is_relative_to(root / "fs")]
    check(not outside, "an object named ../../escaped stays inside the backend's folder", outside)
    refused = requests.post(f"{url}/upload/storage/v1/b/bkt/o", params={"uploadType": "media", "name": "a\nb"},
                            data=b"x", timeout=30)
    check(refused.status_code == 400, "an object name with a line feed is refused (400)", refused.status_code)
    deleted = requests.delete(f"{url}/storage/v1/b/bkt", timeout=30)
    check(deleted.status_code == 409, "buckets.delete of a non-empty bucket: 409", deleted.status_code)


def peak_memory_of_a_200_mib_upload(url: str, root: Path, pid: int) -> None:
    source = root / "big.bin"
    with open(source, "wb") as stream:
        for index in range(200):
            stream.write(index.to_bytes(8, "big") + bytes(1024 * 1024 - 8))
    client = storage.Client(project="p", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})
    client.create_bucket("big").blob("big.bin", chunk_size=8 * 1024 * 1024).upload_from_filename(source)
    peak = next(int(line.split()[1]) for line in open(f"/proc/{pid}/status") if line.startswith("VmHWM")) // 1024
    check(peak < 300, "a 200 MiB resumable upload (8 MiB chunks) keeps the server under 300 MiB", f"{peak} MiB")


def main() -> int:
    binary = subprocess.run(["bash", str(HERE / "build.sh")], check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
        probe_socket.close()
        root = Path(tmp).resolve()
        process = serve(binary, root, port)
        try:
            probe(f"http://127.0.0.1:{port}", root)
            peak_memory_of_a_200_mib_upload(f"http://127.0.0.1:{port}", root, process.pid)
        finally:
            process.terminate()
            process.wait()
    for ok, behaviour, got in results:
        print(f"{'PASS' if ok else 'FAIL'}  {behaviour}" + ("" if ok else f"  (got {got})"))
    return 0 if all(ok for ok, _, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())

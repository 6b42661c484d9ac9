"""Fault injection through the emulator's `/_emulator/faults` route, as the tests of retries use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

# The route families of the calls the stack and the CLI make, as `pathRegex` values (searched in the path).
BUCKETS = r"^/storage/v1/b$"                        # POST buckets.insert, GET buckets.list
BUCKET = r"^/storage/v1/b/[^/]+$"                   # GET buckets.get, PATCH buckets.patch, DELETE buckets.delete
UPLOAD = r"^/upload/storage/v1/b/[^/]+/o$"          # POST multipart upload / resumable start, PUT resumable chunk
OBJECT = r"^/storage/v1/b/[^/]+/o/.+"               # GET objects.get, DELETE objects.delete
DOWNLOAD = r"^/download/storage/v1/b/[^/]+/o/.+"    # GET media download
JOBS = r"/tuningJobs$"                               # POST tuningJobs.create, GET tuningJobs.list
JOB = r"/tuningJobs/[^/:]+$"                         # GET tuningJobs.get
CANCEL = r"/tuningJobs/[^/:]+:cancel$"               # POST tuningJobs.cancel
METADATA = r"/metadataStores/"                       # GET contexts, artifacts, executions
TENSORBOARD = r"/tensorboards/"                      # GET tensorboards, runs, time series, :read/:batchRead
GENERATE = r"/endpoints/[^/:]+:generateContent$"
UNDEPLOY = r"/endpoints/[^/:]+:undeployModel$"
ENDPOINT = r"/endpoints/[^/:]+$"                     # GET endpoints.get, DELETE endpoints.delete
MODEL = r"/models/[^/:]+$"                           # GET models.get, DELETE models.delete


def add_fault(url: str, path_regex: str, method: str, status: int = 503, times: int | None = 1, *,
              lost: bool = False, latency: float = 0.0, error_rate: float | None = None) -> None:
    """Answer `times` matching requests with `status` (None: all of them); `lost`: serve the request first, then
    answer the error instead of its response (the fault's `afterHandler` mode)."""
    spec: dict[str, Any] = {"pathRegex": path_regex, "method": method, "times": times, "afterHandler": lost,
                            "latencySeconds": latency}
    if status:
        spec["status"] = status
    if error_rate is not None:
        spec["errorRate"] = error_rate
    requests.post(f"{url}/_emulator/faults", json=spec, timeout=30).raise_for_status()


def faults(url: str) -> list[dict[str, Any]]:
    return requests.get(f"{url}/_emulator/faults", timeout=30).json()["faults"]


def clear_faults(url: str) -> None:
    requests.delete(f"{url}/_emulator/faults", timeout=30).raise_for_status()


def not_fully_injected(url: str) -> list[dict[str, Any]]:
    """The faults with a `times` that did not inject all their errors (a test that meant to hit them did not)."""
    return [fault for fault in faults(url) if fault["times"] is not None and fault["injected"] < fault["times"]]


def big_file(folder: Path, size: int) -> Path:
    """A file of `size` bytes that are not all alike (so a misplaced chunk would show in its hash)."""
    path = folder / "big.jsonl"
    with path.open("wb") as out:
        block = bytes(range(256)) * 4096
        written = 0
        while written < size:
            piece = block[:size - written]
            out.write(piece)
            written += len(piece)
    return path

"""64 concurrent clients against one served emulator for a few seconds: no 5xx, no connection error.

Each client is a thread with its own keep-alive `requests.Session`, looping over a weighted mix of the calls the
stack and the CLI make while a deploy runs: tuningJobs get (the provider's polling) and list by label (its
idempotency look-ups), create then cancel, bucket and object metadata, dataset uploads and downloads, and
generateContent on a tuned endpoint. Every answer must be one the route gives a well-formed request (a 5xx, a 404
under load or a dropped connection fails the test), and afterwards the emulator's state must hold exactly what the
clients were told they created.

p50/p99 per route are printed and written to tests/artifacts/emulator_load.json, never asserted: the machine is
shared, and the clients share the test process (and its GIL) with the served emulator, so the figures are an upper
bound of the server's latency.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import quote

import pytest
import requests

from emulator.server import RunningEmulator, serve_in_thread
from tests.conftest import LOCATION, PROJECT, REPO, SAMPLE_TRAIN, SAMPLE_VALIDATION, emulator_settings, upload
from tests.emulator.helpers import ENDED, wait_for, wait_until_ended

CLIENTS = 64
LOAD_SECONDS = 5.0
REQUEST_TIMEOUT = 60  # a bound on a hung server, far above any latency seen; not a latency assertion
ARTIFACT = REPO / "tests" / "artifacts" / "emulator_load.json"
BUCKET = "load-datasets"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
LOAD_LABEL = "load-client"
UPLOADED = SAMPLE_VALIDATION.read_bytes()  # the body of every upload: a real dataset, 11 kB
DOWNLOADED = SAMPLE_TRAIN.read_bytes()     # the seeded object every download reads, 42 kB


@dataclass
class Seeded:
    """A served emulator holding a succeeded job (its tuned endpoint serves generateContent) and a dataset."""

    url: str
    job: dict
    dataset_object: str


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    with serve_in_thread(emulator_settings(tmp_path / "emulator")) as running:
        yield Seeded(running.url, succeeded_job(running), "train.jsonl")


def succeeded_job(running: RunningEmulator) -> dict:
    train = upload(running, BUCKET, "train.jsonl", SAMPLE_TRAIN)
    validation = upload(running, BUCKET, "validation.jsonl", SAMPLE_VALIDATION)
    created = requests.post(f"{running.url}/v1/{PARENT}/tuningJobs", json=job_body(train, validation, "seed"),
                            timeout=30)
    created.raise_for_status()
    job = wait_until_ended(lambda: requests.get(f"{running.url}/v1/{created.json()['name']}", timeout=30).json())
    assert job["state"] == "JOB_STATE_SUCCEEDED", job
    return job


def job_body(train: str, validation: str, client: str) -> dict:
    return {"baseModel": "translation-llm-002", "tunedModelDisplayName": f"load-{client}",
            "labels": {LOAD_LABEL: client},
            "supervisedTuningSpec": {"trainingDatasetUri": train, "validationDatasetUri": validation}}


# --- one client --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    route: str
    status: int | None  # None: no HTTP answer (connection error, timeout)
    seconds: float
    problem: str = ""   # set when the answer is not one the route gives this request


@dataclass
class Client:
    """One simulated caller: a session, what it did, and what it created (checked against the emulator after)."""

    index: int
    seeded: Seeded
    session: requests.Session = field(default_factory=requests.Session)
    outcomes: list[Outcome] = field(default_factory=list)
    created_jobs: list[str] = field(default_factory=list)
    cancelled_jobs: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session.trust_env = False  # loopback only: no proxy look-up per request
        self.random = random.Random(self.index)

    def call(self, route: str, method: str, path: str, expected: frozenset[int] = frozenset({200}),
             **kwargs) -> requests.Response | None:
        began = time.perf_counter()
        try:
            response = self.session.request(method, f"{self.seeded.url}{path}", timeout=REQUEST_TIMEOUT, **kwargs)
        except requests.RequestException as error:
            self.outcomes.append(Outcome(route, None, time.perf_counter() - began, f"{type(error).__name__}: {error}"))
            return None
        seconds = time.perf_counter() - began
        problem = "" if response.status_code in expected else f"{response.status_code}: {response.text[:300]}"
        self.outcomes.append(Outcome(route, response.status_code, seconds, problem))
        return response if not problem else None


def get_job(client: Client) -> None:
    client.call("tuningJobs.get", "GET", f"/v1/{client.seeded.job['name']}")


def list_jobs_by_label(client: Client) -> None:
    # The provider's idempotency look-up: a label filter over every job of the location.
    client.call("tuningJobs.list", "GET", f"/v1/{PARENT}/tuningJobs",
                params={"filter": f'labels.{LOAD_LABEL}="{client.index}"', "pageSize": 100})


def create_then_cancel(client: Client) -> None:
    spec = client.seeded.job["supervisedTuningSpec"]
    body = job_body(spec["trainingDatasetUri"], spec["validationDatasetUri"], str(client.index))
    created = client.call("tuningJobs.create", "POST", f"/v1/{PARENT}/tuningJobs", json=body)
    if created is not None:
        name = created.json()["name"]
        client.created_jobs.append(name)
        # 400 FAILED_PRECONDITION is the answer when the runner already ended the job.
        cancelled = client.call("tuningJobs.cancel", "POST", f"/v1/{name}:cancel", frozenset({200, 400}), json={})
        if cancelled is not None and cancelled.status_code == 200:
            client.cancelled_jobs.append(name)


def job_metrics(client: Client) -> None:
    # The provider's read of the latest metrics once the job has ended (the emulator's documented route).
    client.call("metrics", "GET", f"/_emulator/v1/{client.seeded.job['name']}/metrics")


def get_bucket(client: Client) -> None:
    client.call("buckets.get", "GET", f"/storage/v1/b/{BUCKET}")


def upload_dataset(client: Client) -> None:
    # As the stack uploads a dataset: multipart, only if the object does not exist yet.
    name = f"load/{client.index}/{len(client.uploaded)}.jsonl"
    boundary = "load-boundary"
    metadata = json.dumps({"name": name, "contentType": "application/jsonl"})
    body = (f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n"
            f"--{boundary}\r\nContent-Type: application/jsonl\r\n\r\n").encode() + UPLOADED \
        + f"\r\n--{boundary}--\r\n".encode()
    response = client.call("objects.insert", "POST", f"/upload/storage/v1/b/{BUCKET}/o",
                           params={"uploadType": "multipart", "ifGenerationMatch": 0}, data=body,
                           headers={"Content-Type": f"multipart/related; boundary={boundary}"})
    if response is not None:
        client.uploaded.append(name)


def object_metadata(client: Client) -> None:
    client.call("objects.get", "GET", f"/storage/v1/b/{BUCKET}/o/{quote(client.seeded.dataset_object, safe='')}")


def download_dataset(client: Client) -> None:
    response = client.call("objects.download", "GET",
                           f"/download/storage/v1/b/{BUCKET}/o/{quote(client.seeded.dataset_object, safe='')}",
                           params={"alt": "media"})
    if response is not None and response.content != DOWNLOADED:
        client.outcomes[-1].problem = f"downloaded {len(response.content)} bytes that differ from the object"


def generate(client: Client) -> None:
    endpoint = client.seeded.job["tunedModel"]["endpoint"]
    client.call("generateContent", "POST", f"/v1/{endpoint}:generateContent",
                json={"contents": [{"role": "user", "parts": [{"text": "English: Good morning. Spanish:"}]}],
                      "generationConfig": {"maxOutputTokens": 16, "seed": client.index}})


# Weights: a deploy mostly polls its job and reads metadata; uploads, creates and prompts are rarer.
MIX: list[tuple[Callable[[Client], None], int]] = [
    (get_job, 30), (list_jobs_by_label, 8), (create_then_cancel, 2), (job_metrics, 2), (get_bucket, 6),
    (upload_dataset, 4), (object_metadata, 10), (download_dataset, 5), (generate, 1),
]


def run_client(client: Client, start: threading.Barrier, until: list[float]) -> None:
    """Run the mix until the deadline; the first call is the client's own (index-th) route, so every route runs."""
    actions, weights = zip(*MIX, strict=True)  # (action, weight) pairs
    start.wait()
    action = actions[client.index % len(actions)]
    while True:
        action(client)
        if time.monotonic() >= until[0]:
            break
        action = client.random.choices(actions, weights)[0]
    client.session.close()


def run_load(seeded: Seeded, clients: int, seconds: float) -> list[Client]:
    everyone = [Client(index, seeded) for index in range(clients)]
    start = threading.Barrier(clients + 1)
    until = [0.0]
    threads = [threading.Thread(target=run_client, args=(client, start, until), name=f"load-{client.index}")
               for client in everyone]
    for thread in threads:
        thread.start()
    until[0] = time.monotonic() + seconds
    start.wait()
    for thread in threads:
        thread.join()
    return everyone


# --- figures -----------------------------------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency_report(clients: int, outcomes: list[Outcome], seconds: float) -> dict:
    by_route: dict[str, list[float]] = defaultdict(list)
    for outcome in outcomes:
        by_route[outcome.route].append(outcome.seconds)
    routes = {}
    for route, latencies in sorted(by_route.items()):
        ordered = sorted(latencies)
        routes[route] = {"requests": len(ordered), "p50_ms": round(percentile(ordered, 0.50) * 1000, 1),
                         "p99_ms": round(percentile(ordered, 0.99) * 1000, 1),
                         "max_ms": round(ordered[-1] * 1000, 1)}
    return {"clients": clients, "seconds": round(seconds, 2), "requests": len(outcomes),
            "requests_per_second": round(len(outcomes) / seconds, 1), "routes": routes}


def print_report(report: dict) -> None:
    print(f"\n{report['clients']} clients, {report['seconds']:.1f} s, {report['requests']} requests "
          f"({report['requests_per_second']} req/s)")
    print(f"{'route':<20} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for route, row in report["routes"].items():
        print(f"{route:<20} {row['requests']:>9} {row['p50_ms']:>8} {row['p99_ms']:>8} {row['max_ms']:>8}")


# --- the test ----------------------------------------------------------------------------------------------------


def test_64_clients_get_no_server_error_and_every_write_lands(seeded):
    began = time.monotonic()
    clients = run_load(seeded, CLIENTS, LOAD_SECONDS)
    elapsed = time.monotonic() - began

    outcomes = [outcome for client in clients for outcome in client.outcomes]
    report = latency_report(CLIENTS, outcomes, elapsed)
    print_report(report)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2) + "\n")

    problems = [f"{outcome.route}: {outcome.problem}" for outcome in outcomes if outcome.problem]
    assert problems == [], f"{len(problems)} bad answers of {len(outcomes)}, first: {problems[:5]}"
    assert set(report["routes"]) == {"tuningJobs.get", "tuningJobs.list", "tuningJobs.create", "tuningJobs.cancel",
                                     "metrics", "buckets.get", "objects.insert", "objects.get", "objects.download",
                                     "generateContent"}

    # What each client was told it created is there, once.
    uploaded = {name: len(UPLOADED) for client in clients for name in client.uploaded}
    assert listed_objects(seeded.url, "load/") == uploaded
    created = sorted(name for client in clients for name in client.created_jobs)
    assert sorted(load_jobs(seeded.url)) == created
    # A cancel the emulator accepted ends the job CANCELLED, whatever the runner was doing with it meanwhile.
    states = wait_for(lambda: load_jobs(seeded.url), lambda jobs: ENDED.issuperset(jobs.values()))
    assert {states[name] for client in clients for name in client.cancelled_jobs} == {"JOB_STATE_CANCELLED"}


def load_jobs(url: str) -> dict[str, str]:
    """{name: state} of the jobs the clients created (the seeded job aside)."""
    listed = requests.get(f"{url}/v1/{PARENT}/tuningJobs", params={"pageSize": 1000}, timeout=30).json()
    return {job["name"]: job["state"] for job in listed["tuningJobs"]
            if job.get("labels", {}).get(LOAD_LABEL, "seed") != "seed"}


def listed_objects(url: str, prefix: str) -> dict[str, int]:
    """{name: size} of the bucket's objects under `prefix`, every page."""
    sizes, token = {}, None
    while True:
        page = requests.get(f"{url}/storage/v1/b/{BUCKET}/o", params={"prefix": prefix, "pageToken": token},
                            timeout=30).json()
        sizes.update({item["name"]: int(item["size"]) for item in page.get("items", [])})
        token = page.get("nextPageToken")
        if not token:
            return sizes

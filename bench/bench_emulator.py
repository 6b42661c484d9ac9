"""Benchmark: emulator throughput and latency of tuningJobs.get and a 1 MB object download, against /_emulator/health.

    venv/bin/python bench/bench_emulator.py [--concurrency 64] [--duration 10] [--max-requests 200000]

Starts the emulator in a subprocess (``python -m emulator --port 0 --data-dir <tmp>``; the port is read from
its first stdout line), seeds it with a tuning job and a 1 MB object over plain HTTP, then runs, one after
the other, each for ``--duration`` seconds or ``--max-requests`` requests (whichever comes first, after a
short warm-up), with ``--concurrency`` client threads each holding one keep-alive ``requests.Session``:

* health:   ``GET /_emulator/health``: the cheapest route, the baseline of this run;
* get:      ``GET /v1/projects/P/locations/us-central1/tuningJobs/ID`` (tuningJobs.get);
* download: ``GET /download/storage/v1/b/B/o/NAME?alt=media`` of a 1 MB object (body length checked);
* trivial:  the same client against a trivial server (a subprocess that answers every request with a fixed
  ``{}`` from a bare asyncio loop): the load generator's own ceiling at this concurrency.

Prints requests, errors, throughput, p50/p99 latency, throughput ratio to the health baseline, and the
generator's own cost: its CPU time per request (this process's CPU over the scenario / requests) and the
trivial server's rate. Writes the same as JSON to bench/results/emulator.json. Client and server share the machine's cores,
so absolute numbers say as much about the client as about the server; ratios to the baseline
measured in the same run are the comparable figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import requests

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "emulator.json"
PROJECT, LOCATION, BUCKET, OBJECT = "bench-project", "us-central1", "bench-bucket", "blob-1mb.bin"
LISTENING = re.compile(r"emulator listening on (http://[\d.]+:(\d+))")
# Tiny training, so the seeded job ends quickly and no trainer competes for CPU during the measurements.
TRAINING_ENV = {"TT_EMULATOR_TRAINING_D_MODEL": "16", "TT_EMULATOR_TRAINING_N_LAYERS": "1",
                "TT_EMULATOR_TRAINING_N_HEADS": "2", "TT_EMULATOR_TRAINING_MAX_LEN": "64",
                "TT_EMULATOR_TRAINING_BATCH_SIZE": "4", "TT_EMULATOR_TRAINING_STEPS": "5",
                "TT_EMULATOR_TRAINING_EVAL_EVERY": "5"}
ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=64, help="client threads, one connection each")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per scenario")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load before each scenario")
    parser.add_argument("--max-requests", type=int, default=200_000, help="cap of measured requests per scenario")
    parser.add_argument("--object-bytes", type=int, default=1024 * 1024, help="size of the downloaded object")
    parser.add_argument("--python", default=str(_default_python()), help="interpreter that runs the emulator")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="bench-emulator-"))
    emulator = Emulator.start(args.python, data_dir)
    try:
        job = seed(emulator.url, args.object_bytes)
        body_bytes = len(requests.get(f"{emulator.url}/v1/{job['name']}", timeout=30).content)
        scenarios: dict[str, Callable[[requests.Session], None]] = {
            "health": checked_get(f"{emulator.url}/_emulator/health"),
            "get": checked_get(f"{emulator.url}/v1/{job['name']}"),
            "download": checked_get(f"{emulator.url}/download/storage/v1/b/{BUCKET}/o/{OBJECT}?alt=media",
                                    expect_length=args.object_bytes),
        }
        trivial = TrivialServer.start(args.python)
        scenarios["trivial"] = checked_get(f"{trivial.url}/")
        servers = {name: emulator for name in scenarios}
        servers["trivial"] = trivial
        results = {}
        for name, call in scenarios.items():
            print(f"running {name}: {args.concurrency} clients, {args.duration:g} s ...", file=sys.stderr, flush=True)
            server = servers[name]
            server_before, client_before = server.cpu_seconds(), _own_cpu_seconds()
            results[name] = run_load(call, args.concurrency, args.duration, args.warmup, args.max_requests)
            # CPU over the whole scenario (warm-up included) as % of one core, to see which side is saturated.
            wall = args.warmup + results[name].seconds
            client_cpu = _own_cpu_seconds() - client_before
            results[name].server_cpu_pct = 100 * (server.cpu_seconds() - server_before) / wall
            results[name].client_cpu_pct = 100 * client_cpu / wall
            # Per request of the measured window, with the warm-up's CPU removed in proportion to its time.
            results[name].client_cpu_ms_per_request = 1000 * client_cpu * (results[name].seconds / wall) / max(
                results[name].requests, 1)
            if not server.alive():
                raise RuntimeError(f"the server died during {name}; see {emulator.log_path}")
    finally:
        emulator.stop()
        if "trivial" in locals():
            trivial.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    baseline = results["health"].throughput
    rows = {name: result.summary(baseline) for name, result in results.items()}
    print_table(rows, args.concurrency)
    report = {
        "benchmark": "emulator",
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"concurrency": args.concurrency, "duration_s": args.duration, "warmup_s": args.warmup,
                     "max_requests": args.max_requests, "object_bytes": args.object_bytes,
                     "client": "ThreadPoolExecutor + requests.Session per thread (keep-alive)",
                     "server": "python -m emulator (uvicorn, one process) in a subprocess"},
        "seed": {"job": job["name"], "job_state": job["state"], "job_body_bytes": body_bytes},
        "baseline": "health",
        "scenarios": rows,
        "checks": summary_checks(rows, args.concurrency),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0 if all(row["errors"] == 0 for row in rows.values()) else 1


# --- the server subprocesses ---------------------------------------------------------------------------


class ServerProcess:
    """CPU time, liveness and stop of a server subprocess (`process` is set by the subclass)."""

    process: subprocess.Popen

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process and its waited-for children (Linux /proc)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# Answers every HTTP/1.1 request (no body expected) with a fixed `{}`, keeping the connection open: as little
# server work as a request can take, so the client's rate against it is the load generator's own ceiling.
TRIVIAL_SERVER = """
import asyncio
RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\n\\r\\n{}"
async def serve(reader, writer):
    try:
        while await reader.readuntil(b"\\r\\n\\r\\n"):
            writer.write(RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


@dataclass
class TrivialServer(ServerProcess):
    process: subprocess.Popen
    url: str

    @classmethod
    def start(cls, python: str) -> "TrivialServer":
        process = subprocess.Popen([python, "-c", TRIVIAL_SERVER], stdout=subprocess.PIPE, text=True)
        port = int(process.stdout.readline())
        return cls(process, f"http://127.0.0.1:{port}")


@dataclass
class Emulator(ServerProcess):
    process: subprocess.Popen
    url: str
    log_path: Path

    @classmethod
    def start(cls, python: str, data_dir: Path, timeout: float = 60.0) -> "Emulator":
        log_path = data_dir / "emulator.stderr.log"
        env = {**os.environ, **TRAINING_ENV, "PYTHONUNBUFFERED": "1"}
        with open(log_path, "wb") as stderr:
            process = subprocess.Popen([python, "-m", "emulator", "--port", "0", "--data-dir", str(data_dir / "state")],
                                       cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        match = LISTENING.search(first[0]) if first else None
        if match is None:
            process.kill()
            process.wait()
            raise RuntimeError(f"the emulator did not report its port within {timeout:.0f} s "
                               f"(first line {first[:1]!r}); see {log_path}")
        # Keep draining stdout so the child can never block on a full pipe.
        threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
        return cls(process, match.group(1), log_path)


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def _default_python() -> Path:
    venv = REPO / "venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def seed(url: str, object_bytes: int) -> dict:
    """A bucket with the datasets and the download object, and one ended tuning job; returns the job."""
    session = requests.Session()
    session.trust_env = False
    response = session.post(f"{url}/storage/v1/b", params={"project": PROJECT}, json={"name": BUCKET}, timeout=30)
    response.raise_for_status()

    def put(name: str, data: bytes) -> str:
        r = session.post(f"{url}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name},
                         data=data, headers={"Content-Type": "application/octet-stream"}, timeout=60)
        r.raise_for_status()
        return f"gs://{BUCKET}/{name}"

    put(OBJECT, os.urandom(object_bytes))
    train = put("train.jsonl", (REPO / "data" / "train.jsonl").read_bytes())
    validation = put("validation.jsonl", (REPO / "data" / "validation.jsonl").read_bytes())
    body = {"baseModel": "translation-llm-002", "tunedModelDisplayName": "bench", "labels": {"purpose": "bench"},
            "supervisedTuningSpec": {"trainingDatasetUri": train, "validationDatasetUri": validation,
                                     "hyperParameters": {"epochCount": 1, "adapterSize": "ADAPTER_SIZE_FOUR"}}}
    response = session.post(f"{url}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs", json=body, timeout=30)
    response.raise_for_status()
    name = response.json()["name"]
    print("seeded a tuning job; waiting for it to end (tiny training) ...", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 180
    while True:
        job = session.get(f"{url}/v1/{name}", timeout=30).json()
        if job["state"] in ENDED:
            return job
        if time.monotonic() > deadline:  # never measure while a trainer eats a core
            session.post(f"{url}/v1/{name}:cancel", json={}, timeout=30)
            deadline = time.monotonic() + 30
        time.sleep(0.5)


# --- load ----------------------------------------------------------------------------------------------


def checked_get(url: str, expect_length: Optional[int] = None) -> Callable[[requests.Session], None]:
    def call(session: requests.Session) -> None:
        # stream + raw.read(): one C-level read of the whole body instead of requests' 10 KB Python loop,
        # so a 1 MB body costs the (GIL-bound) client as little as possible.
        with session.get(url, timeout=30, stream=True) as response:
            body = response.raw.read()
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}")
        if expect_length is not None and len(body) != expect_length:
            raise RuntimeError(f"got {len(body)} bytes, expected {expect_length}")

    return call


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)
    server_cpu_pct: float = 0.0
    client_cpu_pct: float = 0.0
    client_cpu_ms_per_request: float = 0.0

    @property
    def throughput(self) -> float:
        return (self.requests - self.errors) / self.seconds if self.seconds else 0.0

    def summary(self, baseline: float) -> dict:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] * 1000 if ordered else 0.0

        return {"requests": self.requests, "errors": self.errors, "seconds": round(self.seconds, 3),
                "throughput_rps": round(self.throughput, 1), "p50_ms": round(pct(50), 2), "p90_ms": round(pct(90), 2),
                "p99_ms": round(pct(99), 2), "max_ms": round(ordered[-1] * 1000, 2) if ordered else 0.0,
                "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else 0.0,
                "ratio_to_baseline": round(self.throughput / baseline, 3) if baseline else None,
                "server_cpu_pct": round(self.server_cpu_pct, 1), "client_cpu_pct": round(self.client_cpu_pct, 1),
                "client_cpu_ms_per_request": round(self.client_cpu_ms_per_request, 3),
                "error_samples": self.error_samples[:5]}


def run_load(call: Callable[[requests.Session], None], concurrency: int, duration: float, warmup: float,
             max_requests: int) -> LoadResult:
    """`concurrency` threads call `call(session)` back to back; only calls started in the window count."""
    lock = threading.Lock()
    result = LoadResult()
    budget = [max_requests]
    start_gate = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}

    def worker() -> None:
        session = requests.Session()
        session.trust_env = False  # no proxy lookups per request; loopback only
        latencies, errors, samples = [], 0, []
        start_gate.wait()
        while time.perf_counter() < window["measure_from"]:  # warm-up: connect, fill caches
            _safe(call, session)
        while True:
            now = time.perf_counter()
            if now >= window["until"]:
                break
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            began = time.perf_counter()
            problem = _safe(call, session)
            latencies.append(time.perf_counter() - began)
            if problem:
                errors += 1
                samples.append(problem)
        ended = time.perf_counter()
        session.close()
        with lock:
            result.latencies.extend(latencies)
            result.requests += len(latencies)
            result.errors += errors
            result.error_samples.extend(samples[:2])
            window["last_end"] = max(window.get("last_end", 0.0), ended)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        now = time.perf_counter()
        window["measure_from"] = now + warmup
        window["until"] = now + warmup + duration
        start_gate.wait()
        for future in futures:
            future.result()
    # Throughput over the measured window: from its start to the end of the last measured request.
    result.seconds = window["last_end"] - window["measure_from"]
    return result


def _safe(call: Callable[[requests.Session], None], session: requests.Session) -> str:
    try:
        call(session)
        return ""
    except Exception as error:  # noqa: BLE001 - counted and sampled, never fatal
        return f"{type(error).__name__}: {error}"[:200]


def summary_checks(rows: dict[str, dict], concurrency: int) -> list[dict]:
    """The rows of bench/results.md: tuningJobs.get against health, and the load generator's own cost."""
    get, health, trivial = rows["get"], rows["health"], rows["trivial"]
    return [
        {"name": f"emulator `tuningJobs.get`, {concurrency} clients: p99 latency",
         "baseline": f"`/_emulator/health` p99 {health['p99_ms']:.0f} ms, {health['throughput_rps']:.0f} req/s",
         "measured": f"p99 {get['p99_ms']:.0f} ms (p50 {get['p50_ms']:.0f} ms), {get['throughput_rps']:.0f} req/s",
         "ratio": get["ratio_to_baseline"], "target": "p99 reported, no errors",
         "ok": get["errors"] == 0 and health["errors"] == 0},
        {"name": f"load generator's own cost, {concurrency} clients (ratio: `get` rate / trivial server's rate)",
         "baseline": f"trivial server: {trivial['throughput_rps']:.0f} req/s, p99 {trivial['p99_ms']:.0f} ms",
         "measured": f"client CPU {get['client_cpu_ms_per_request']:.2f} ms/request on `get` "
                     f"({get['client_cpu_pct']:.0f}% of a core; server {get['server_cpu_pct']:.0f}%)",
         "ratio": round(get["throughput_rps"] / trivial["throughput_rps"], 2) if trivial["throughput_rps"] else None,
         "target": "reported", "ok": trivial["errors"] == 0},
    ]


def print_table(rows: dict[str, dict], concurrency: int) -> None:
    print(f"\nemulator load test: {concurrency} concurrent clients on loopback, baseline = health\n")
    header = (f"{'scenario':<10} {'requests':>9} {'errors':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'vs health':>10} {'server CPU':>11} {'client CPU':>11} {'client ms/req':>14}")
    print(header)
    print("-" * len(header))
    for name, row in rows.items():
        print(f"{name:<10} {row['requests']:>9} {row['errors']:>7} {row['throughput_rps']:>9.1f} "
              f"{row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['ratio_to_baseline']:>10.3f} "
              f"{row['server_cpu_pct']:>10.0f}% {row['client_cpu_pct']:>10.0f}% "
              f"{row['client_cpu_ms_per_request']:>14.3f}")
    print(f"\n(CPU in % of one core over each scenario; this machine has {os.cpu_count()} cores shared by both sides)")
    for name, row in rows.items():
        for sample in row["error_samples"]:
            print(f"  {name} error: {sample}")


if __name__ == "__main__":
    sys.exit(main())

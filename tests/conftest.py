"""Shared fixtures: a served emulator on port 0 in a temp dir, API targets, dataset files."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Iterator

import pytest
import requests

from emulator.background import BackgroundEmulator
from emulator.server import RunningEmulator, serve_in_thread
from emulator.settings import EmulatorSettings, TrainingSettings
from tuning.client import ApiTarget, TuningApi

REPO = Path(__file__).resolve().parent.parent
SAMPLE_TRAIN = REPO / "data" / "train.jsonl"
SAMPLE_VALIDATION = REPO / "data" / "validation.jsonl"
PROJECT = "test-project"
LOCATION = "us-central1"

# Small enough that a job finishes in a few seconds on 2 cores, big enough that loss visibly falls.
FAST_TRAINING = TrainingSettings(d_model=16, n_layers=1, n_heads=2, max_len=96, batch_size=8, steps=30,
                                 eval_every=10, learning_rate=1e-2)


def emulator_settings(data_dir: Path, **training_overrides) -> EmulatorSettings:
    training = FAST_TRAINING.model_copy(update=training_overrides)
    return EmulatorSettings(host="127.0.0.1", port=0, data_dir=data_dir, training=training)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A served emulator with fast training, fresh state in tmp_path."""
    with serve_in_thread(emulator_settings(tmp_path / "emulator")) as running:
        yield running


@pytest.fixture
def slow_emulator(tmp_path: Path) -> Iterator[RunningEmulator]:
    """A served emulator whose jobs run for minutes (for cancel/destroy tests)."""
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as running:
        yield running


@pytest.fixture
def target(emulator: RunningEmulator) -> ApiTarget:
    return ApiTarget(project=PROJECT, location=LOCATION, emulator_endpoint=emulator.url)


@pytest.fixture
def tuning_api(target: ApiTarget) -> TuningApi:
    return TuningApi(target)


@pytest.fixture
def dataset_files(tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the sample training and validation files that a test may edit."""
    folder = tmp_path / "data"
    folder.mkdir()
    return (Path(shutil.copy(SAMPLE_TRAIN, folder / "train.jsonl")),
            Path(shutil.copy(SAMPLE_VALIDATION, folder / "validation.jsonl")))


def upload(emulator: RunningEmulator, bucket: str, name: str, path: Path) -> str:
    """Put a local file into the emulator's GCS with the official client; returns its gs:// URI."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(project=PROJECT, credentials=AnonymousCredentials(),
                            client_options={"api_endpoint": emulator.url})
    try:
        client.create_bucket(bucket)
    except Exception:  # noqa: BLE001 - already exists
        pass
    client.bucket(bucket).blob(name).upload_from_filename(str(path))
    return f"gs://{bucket}/{name}"


@pytest.fixture
def sample_uris(emulator: RunningEmulator) -> tuple[str, str]:
    """The sample datasets uploaded to the emulator: (training URI, validation URI)."""
    return (upload(emulator, "datasets", "train.jsonl", SAMPLE_TRAIN),
            upload(emulator, "datasets", "validation.jsonl", SAMPLE_VALIDATION))


def control(emulator: RunningEmulator, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{emulator.url}/_emulator/{path}", timeout=30, **kwargs)


def configured_provider(provider_class, endpoint: str):
    """A dynamic provider configured, as the engine does through `configure()`, to target the emulator."""
    from pulumi.dynamic.config import Config

    provider = provider_class()
    provider.configure(type("Req", (), {"config": Config({"gcp:project": PROJECT, "gcp:region": LOCATION,
                                                         "translation-tuning:emulatorEndpoint": endpoint},
                                                        "translation-tuning")})())
    return provider


def emulator_pids(data_dir: Path) -> list[int]:
    """Every live process serving `python -m emulator` on `data_dir`, found through /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"emulator" in command and str(data_dir).encode() in command:
            pids.append(int(entry.name))
    return pids


def stop_background(project_dir: Path) -> None:
    """Stop a project's background emulator, and kill any other left on its data dir by a failed test."""
    emulator = BackgroundEmulator.for_project(project_dir)
    emulator.stop()
    for pid in emulator_pids(emulator.data_dir):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended on its own meanwhile


@pytest.fixture
def background_project(tmp_path: Path) -> Iterator[Path]:
    """A project folder (tmp_path) whose background emulator, if the test starts one, is stopped afterwards."""
    yield tmp_path
    stop_background(tmp_path)

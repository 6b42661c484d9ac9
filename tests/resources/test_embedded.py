"""`emulatorEndpoint: embedded` on the provider side: configure() starts or reuses the project's background emulator."""

from __future__ import annotations

import asyncio
import pickle
import re
import subprocess
import sys

import grpc
import pytest
import requests
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from emulator.background import BackgroundEmulator
from resources.embedded import resolve_endpoint
from resources.target import target_from_config
from resources.tuning_job import TuningJobProvider
from tests.conftest import LOCATION, PROJECT, REPO, configured_provider, emulator_pids
from tuning.errors import EmulatorError


def stack_config(endpoint: str) -> Config:
    return Config({"gcp:project": PROJECT, "gcp:region": LOCATION,
                   "translation-tuning:emulatorEndpoint": endpoint}, "translation-tuning")


def test_embedded_target_starts_the_background_emulator_of_the_working_directory(background_project, monkeypatch):
    # The engine starts the provider plugin in the program's folder; that is where `.run/emulator` lives.
    monkeypatch.chdir(background_project)
    target = target_from_config(stack_config("embedded"))
    background = BackgroundEmulator.for_project(background_project)
    assert target.emulator_endpoint == background.running_endpoint()
    assert requests.get(f"{target.emulator_endpoint}/_emulator/health", timeout=10).ok
    assert (target.project, target.location) == (PROJECT, LOCATION)

    # A second configure (another provider, or the program's own call) reuses it.
    assert target_from_config(stack_config("embedded")).emulator_endpoint == target.emulator_endpoint


def test_the_url_never_goes_into_the_pickled_provider(background_project, monkeypatch):
    monkeypatch.chdir(background_project)
    provider = configured_provider(TuningJobProvider, "embedded")
    url = provider.target.emulator_endpoint
    assert url.startswith("http://127.0.0.1:")
    assert url.encode() not in pickle.dumps(provider)


def test_a_url_or_no_endpoint_is_used_as_is_and_starts_nothing(tmp_path):
    assert resolve_endpoint("http://emulator.invalid", tmp_path) == "http://emulator.invalid"
    assert resolve_endpoint(None, tmp_path) is None
    assert not (tmp_path / ".run").exists()


def test_an_emulator_that_cannot_start_fails_configure_naming_its_log(background_project, monkeypatch):
    monkeypatch.chdir(background_project)
    monkeypatch.setenv("TT_EMULATOR_MAX_JSON_BYTES", "not-a-number")
    log_file = BackgroundEmulator.for_project(background_project).log_file
    with pytest.raises(EmulatorError, match=f"exited at start.*{re.escape(str(log_file))}"):
        target_from_config(stack_config("embedded"))


def test_the_provider_plugin_started_in_the_project_folder_starts_its_emulator(background_project):
    """As the engine runs it: `python -m pulumi.dynamic` with the program's folder as working directory."""
    plugin = subprocess.Popen([sys.executable, "-u", "-m", "pulumi.dynamic"], stdout=subprocess.PIPE,
                              cwd=background_project, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{int(plugin.stdout.readline())}")
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        stub.Configure(provider_pb2.ConfigureRequest(args=asyncio.run(rpc.serialize_properties(
            {"gcp:project": PROJECT, "gcp:region": LOCATION, "translation-tuning:emulatorEndpoint": "embedded"},
            {}))))
        # The provider is configured when the first call deserialises it.
        news = {"__provider": serialize_provider(TuningJobProvider()), "baseModel": "translation-llm-002",
                "trainingDatasetUri": "gs://bucket/train.jsonl", "adapterSize": 4, "labels": {},
                "idempotencyKey": "embedded", "waitForCompletion": False, "completionTimeoutSeconds": 60,
                "onDelete": "cancel"}
        checked = stub.Check(provider_pb2.CheckRequest(
            urn="urn:pulumi:test::translation-tuning::pulumi-python:dynamic/vertex:TuningJob::job",
            olds=asyncio.run(rpc.serialize_properties({}, {})),
            news=asyncio.run(rpc.serialize_properties(news, {}))))
        channel.close()
    finally:
        plugin.kill()
        plugin.wait()
    assert list(checked.failures) == []
    background = BackgroundEmulator.for_project(background_project)
    # It outlives the plugin: the next command's program and plugin reuse it.
    assert background.running_endpoint() and emulator_pids(background.data_dir) == [background.pid()]

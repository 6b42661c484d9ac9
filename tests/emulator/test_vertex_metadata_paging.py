"""Paging through experiment contexts stays stable while new jobs start."""

from __future__ import annotations

import requests

from tests.conftest import LOCATION, PROJECT
from tests.emulator.helpers import wait_until_ended

JOBS = f"/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"
CONTEXTS = f"/v1/projects/{PROJECT}/locations/{LOCATION}/metadataStores/default/contexts"


def run_job(emulator, uri: str) -> None:
    body = {"baseModel": "translation-llm-002", "supervisedTuningSpec": {"trainingDatasetUri": uri}}
    job = requests.post(f"{emulator.url}{JOBS}", json=body, timeout=30).json()
    wait_until_ended(lambda: requests.get(f"{emulator.url}/v1/{job['name']}", timeout=30).json())


def contexts_page(emulator, token: str = "") -> dict:
    params = {"filter": 'schema_title="system.Experiment"', "pageSize": "1", **({"pageToken": token} if token else {})}
    response = requests.get(f"{emulator.url}{CONTEXTS}", params=params, timeout=30)
    response.raise_for_status()
    return response.json()


def test_a_job_starting_between_pages_neither_repeats_nor_skips_an_experiment(emulator, sample_uris):
    run_job(emulator, sample_uris[0])
    run_job(emulator, sample_uris[0])
    first = contexts_page(emulator)
    run_job(emulator, sample_uris[0])  # a newer experiment appears in front of the list
    second = contexts_page(emulator, first["nextPageToken"])
    names = [context["name"] for page in (first, second) for context in page["contexts"]]
    assert len(set(names)) == 2
    assert "nextPageToken" not in second

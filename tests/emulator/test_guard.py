"""Web pages on other origins, and DNS-rebinding host names, cannot drive the emulator."""

from __future__ import annotations

import requests

from tests.conftest import LOCATION, PROJECT

JOBS = f"/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"


def test_a_cross_origin_request_is_refused_and_changes_nothing(emulator):
    from tests.conftest import SAMPLE_TRAIN, upload

    upload(emulator, "kept", "train.jsonl", SAMPLE_TRAIN)
    response = requests.post(f"{emulator.url}/_emulator/reset", headers={"Origin": "http://localhost:9999",
                                                                         "Content-Type": "text/plain"}, timeout=10)
    assert (response.status_code, response.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    assert "Cross-origin request from 'http://localhost:9999' refused" in response.json()["error"]["message"]
    assert requests.get(f"{emulator.url}/storage/v1/b/kept/o/train.jsonl", timeout=10).status_code == 200


def test_a_same_origin_request_is_served(emulator):
    response = requests.get(f"{emulator.url}{JOBS}", headers={"Origin": emulator.url}, timeout=10)
    assert response.status_code == 200


def test_a_foreign_host_name_is_refused(emulator):
    response = requests.get(f"{emulator.url}{JOBS}", headers={"Host": f"attacker.example:{emulator.port}"},
                            timeout=10)
    assert (response.status_code, response.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert "attacker.example" in response.json()["error"]["message"]


def test_localhost_is_served(emulator):
    assert requests.get(f"http://localhost:{emulator.port}/_emulator/health", timeout=10).ok


def test_the_console_page_is_guarded_too(emulator):
    assert requests.get(f"{emulator.url}/", headers={"Host": "rebound.example"}, timeout=10).status_code == 400

"""Bad client input always gets a Google error envelope with a 4xx naming the problem, never a bare 500."""

from __future__ import annotations

import base64
import json

import pytest
import requests

from tests.conftest import LOCATION, PROJECT

JOBS = f"/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"
VALID = {"baseModel": "translation-llm-002", "supervisedTuningSpec": {"trainingDatasetUri": "gs://datasets/train.jsonl"}}


def call(emulator, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{emulator.url}{path}", timeout=30, **kwargs)


def assert_error(response: requests.Response, code: int, status: str, *fragments: str) -> None:
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["status"]) == (code, code, status), error
    for fragment in fragments:
        assert fragment in error["message"]


@pytest.mark.parametrize("body, fragment", [
    ({**VALID, "supervisedTuningSpec": {**VALID["supervisedTuningSpec"], "hyperParameter": {"epochCount": 7}}},
     'Invalid JSON payload received. Message type "google.cloud.aiplatform.v1beta1.SupervisedTuningSpec" has no '
     'field named "hyperParameter"'),
    ({**VALID, "validationDatasetURI": "gs://datasets/v.jsonl"}, 'no field named "validationDatasetURI"'),
    ({**VALID, "supervisedTuningSpec": {**VALID["supervisedTuningSpec"], "hyperParameters": {"adapterSize": -5}}},
     "adapterSize: -5 is not an AdapterSize number"),
    ({**VALID, "supervisedTuningSpec": {**VALID["supervisedTuningSpec"], "hyperParameters": {"adapterSize": {}}}},
     "adapterSize"),
], ids=["misspelled-nested-field", "misspelled-field", "enum-out-of-range", "enum-of-wrong-type"])
def test_create_rejects_what_the_proto_does_not_define(emulator, body, fragment):
    assert_error(call(emulator, "POST", JOBS, json=body), 400, "INVALID_ARGUMENT", fragment)


def test_create_rejects_a_malformed_project(emulator):
    response = call(emulator, "POST", f"/v1/projects/a%25zz/locations/{LOCATION}/tuningJobs", json=VALID)
    assert_error(response, 400, "INVALID_ARGUMENT", "Invalid project 'a%zz'")


def test_deeply_nested_json_is_a_400(emulator):
    response = call(emulator, "POST", JOBS, data="[" * 100000 + "]" * 100000,
                    headers={"content-type": "application/json"})
    assert_error(response, 400, "INVALID_ARGUMENT", "Invalid JSON payload")


@pytest.mark.parametrize("params", [
    {"pageToken": base64.urlsafe_b64encode(json.dumps({"before": 1e30}).encode()).decode()},
    {"pageToken": "not-base64-json"},
    {"pageSize": "²"},
], ids=["token-out-of-range", "token-garbage", "page-size-unicode-digit"])
def test_list_rejects_bad_paging(emulator, params):
    assert_error(call(emulator, "GET", JOBS, params=params), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize("body, fragment", [
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": {"temperature": "hot"}},
     "must be numbers"),
    ({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}], "generationConfig": {"seed": 2**70}}, "32-bit"),
    ({"contents": ["x"]}, "contents[0]"),
    ({"contents": [{"parts": ["text"]}]}, "contents[0].parts[0]"),
], ids=["temperature-not-a-number", "seed-too-large", "content-not-an-object", "part-not-an-object"])
def test_generate_content_rejects_malformed_requests(emulator, body, fragment):
    # The base model answers through the same request checks as a tuned endpoint, with no job to train first.
    model = f"projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/translation-llm-002"
    assert_error(call(emulator, "POST", f"/v1/{model}:generateContent", json=body), 400, "INVALID_ARGUMENT",
                 fragment)


def test_an_unforeseen_failure_is_a_google_internal_error(emulator, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(emulator.state.jobs, "job", broken)  # stands for any bug behind a route
    assert_error(call(emulator, "GET", f"{JOBS}/123"), 500, "INTERNAL", f"GET {JOBS}/123")

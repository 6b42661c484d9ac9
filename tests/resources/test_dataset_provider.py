"""The TuningDataset provider against a served emulator: validate first, content-addressed objects it owns."""

from __future__ import annotations

import requests

from resources.bucket import EmulatorBucketProvider
from resources.dataset import TuningDatasetProvider
from tests.conftest import SAMPLE_TRAIN, configured_provider


def checked(provider: TuningDatasetProvider, path) -> dict:
    result = provider.check({}, {"path": str(path), "kind": "training", "bucket": "data-bucket",
                                 "prefix": "datasets"})
    assert result.failures == []
    return result.inputs


def objects(endpoint: str) -> list[str]:
    body = requests.get(f"{endpoint}/storage/v1/b/data-bucket/o", timeout=10).json()
    return sorted(item["name"] for item in body.get("items", []))


def test_check_fingerprints_a_valid_file():
    import hashlib
    import json

    inputs = checked(TuningDatasetProvider(), SAMPLE_TRAIN)
    assert inputs["sha256"] == hashlib.sha256(SAMPLE_TRAIN.read_bytes()).hexdigest()
    assert inputs["exampleCount"] == len(SAMPLE_TRAIN.read_text().splitlines())
    assert inputs["bytes"] == SAMPLE_TRAIN.stat().st_size
    # Estimated as the per-example limit is: all text characters of the file / 4, rounded up.
    characters = sum(len(part["text"]) for line in SAMPLE_TRAIN.read_text().splitlines()
                     for turn in json.loads(line)["contents"] for part in turn["parts"])
    assert inputs["estimatedTokens"] == -(-characters // 4) > 0


def test_a_dataset_recorded_without_a_fact_is_no_change_and_refresh_records_the_fact(emulator, dataset_files):
    """State written before `estimatedTokens` existed. An update would leave `uri` unknown during preview (so the
    job would show as replaced; on prod, protected, the preview would fail): the diff is none, and refresh
    (read) records the fact while the file still holds the uploaded content."""
    configured_provider(EmulatorBucketProvider, emulator.url).create({"name": "data-bucket", "location": "US-CENTRAL1"})
    provider = configured_provider(TuningDatasetProvider, emulator.url)
    train, _ = dataset_files
    news = checked(provider, train)
    legacy = {key: value for key, value in provider.create(news).outs.items() if key != "estimatedTokens"}
    assert provider.diff("id", legacy, news).changes is False

    assert provider.read("id", legacy).outs == {**legacy, "estimatedTokens": news["estimatedTokens"]}
    train.write_text(train.read_text() + train.read_text().splitlines()[0] + "\n")  # new content: no fact from it
    assert provider.read("id", legacy).outs == legacy


def test_check_names_the_file_and_line_of_each_problem(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text(SAMPLE_TRAIN.read_text().splitlines()[0] + '\n{"contents": []}\n')
    result = TuningDatasetProvider().check({}, {"path": str(bad), "kind": "training", "bucket": "b",
                                                "prefix": "datasets"})
    assert [failure.property for failure in result.failures] == ["path"]
    assert result.failures[0].reason.startswith(f"{bad}:2: contents")


def test_create_uploads_under_the_content_hash(emulator):
    configured_provider(EmulatorBucketProvider, emulator.url).create({"name": "data-bucket", "location": "US-CENTRAL1"})
    provider = configured_provider(TuningDatasetProvider, emulator.url)
    inputs = checked(provider, SAMPLE_TRAIN)
    created = provider.create(inputs)
    assert created.outs["uri"] == f"gs://data-bucket/{created.outs['objectName']}"
    assert created.outs["objectName"].startswith(f"datasets/training/{inputs['sha256']}/")
    assert objects(emulator.url) == [created.outs["objectName"]]


def test_deleting_a_replaced_instance_keeps_the_object_of_its_replacement(emulator):
    """Same content uploaded by a replacement (e.g. a data rollback) must survive the old instance's delete."""
    configured_provider(EmulatorBucketProvider, emulator.url).create({"name": "data-bucket", "location": "US-CENTRAL1"})
    provider = configured_provider(TuningDatasetProvider, emulator.url)
    inputs = checked(provider, SAMPLE_TRAIN)
    old = provider.create(inputs)
    new = provider.create(inputs)
    provider.delete(old.id, old.outs)
    assert objects(emulator.url) == [new.outs["objectName"]]
    assert provider.read(new.id, new.outs).id == new.id


def test_read_reports_a_deleted_object_gone(emulator):
    configured_provider(EmulatorBucketProvider, emulator.url).create({"name": "data-bucket", "location": "US-CENTRAL1"})
    provider = configured_provider(TuningDatasetProvider, emulator.url)
    created = provider.create(checked(provider, SAMPLE_TRAIN))
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""


def test_a_moved_file_with_the_same_content_is_no_replacement():
    olds = {**checked(TuningDatasetProvider(), SAMPLE_TRAIN), "uri": "gs://b/o", "objectName": "o"}
    result = TuningDatasetProvider().diff("id", olds, {**olds, "path": "/elsewhere/train.jsonl"})
    assert (result.changes, result.replaces) == (True, [])
    assert "uri" in result.stables


def test_new_content_replaces_the_object():
    olds = checked(TuningDatasetProvider(), SAMPLE_TRAIN)
    result = TuningDatasetProvider().diff("id", olds, {**olds, "sha256": "0" * 64})
    assert result.replaces == ["sha256"]

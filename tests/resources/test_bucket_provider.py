"""The local stack's bucket against a served emulator: create, read, and a destroy that loses nothing."""

from __future__ import annotations

import pytest

from resources.bucket import EmulatorBucketProvider
from tests.conftest import SAMPLE_TRAIN, configured_provider, upload
from tuning.errors import ApiError

PROPS = {"name": "stack-bucket", "location": "US-CENTRAL1", "labels": {"env": "test"}}


def configured(endpoint: str) -> EmulatorBucketProvider:
    return configured_provider(EmulatorBucketProvider, endpoint)


def test_create_then_read_finds_the_bucket(emulator):
    provider = configured(emulator.url)
    created = provider.create(PROPS)
    assert provider.read(created.id, created.outs).id == "stack-bucket"


def test_read_of_a_deleted_bucket_reports_it_gone(emulator):
    provider = configured(emulator.url)
    created = provider.create(PROPS)
    provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == ""


def test_destroy_refuses_to_delete_objects_the_stack_did_not_upload(emulator):
    provider = configured(emulator.url)
    created = provider.create(PROPS)
    upload(emulator, "stack-bucket", "someone-elses/report.jsonl", SAMPLE_TRAIN)
    with pytest.raises(ApiError, match=r"bucket stack-bucket is not empty \(someone-elses/report.jsonl, \.\.\.\)"):
        provider.delete(created.id, created.outs)
    assert provider.read(created.id, created.outs).id == "stack-bucket"


def test_diff_replaces_on_name_and_updates_labels_in_place(emulator):
    provider = configured(emulator.url)
    assert provider.diff("b", PROPS, {**PROPS, "name": "other"}).replaces == ["name"]
    relabel = provider.diff("b", PROPS, {**PROPS, "labels": {"env": "prod"}})
    assert (relabel.changes, relabel.replaces) == (True, [])


def test_update_sets_the_new_labels(emulator):
    from tuning.storage import StorageApi

    provider = configured(emulator.url)
    created = provider.create(PROPS)
    provider.update(created.id, created.outs, {**PROPS, "labels": {"env": "prod", "team": "ml"}})
    assert StorageApi(provider.target).bucket_labels("stack-bucket") == {"env": "prod", "team": "ml"}

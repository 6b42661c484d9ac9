"""The TuningJob provider's lifecycle (the table in docs/design.md) against a served emulator, called directly."""

from __future__ import annotations

import base64

import dill
import pytest
import requests
from pulumi.output import Unknown

from resources.target import UNKNOWN
from resources.tuning_job import IDEMPOTENCY_LABEL, TuningJobProvider
from tests.conftest import LOCATION, PROJECT, configured_provider, control
from tuning.errors import JobFailedError

SIX_METRICS = {"train_total_loss", "train_fraction_of_correct_next_step_preds", "train_num_predictions",
               "eval_total_loss", "eval_fraction_of_correct_next_step_preds", "eval_num_predictions"}


def configured(endpoint: str) -> TuningJobProvider:
    return configured_provider(TuningJobProvider, endpoint)


def inputs(train_uri: str, validation_uri: str | None = None, **overrides) -> dict:
    props = {"baseModel": "translation-llm-002", "trainingDatasetUri": train_uri,
             "validationDatasetUri": validation_uri, "tunedModelDisplayName": "unit", "adapterSize": 4,
             "labels": {"team": "ml"}, "idempotencyKey": "k1", "waitForCompletion": True,
             "completionTimeoutSeconds": 120, "onDelete": "cancel"}
    props.update(overrides)
    return props


def vertex_get(endpoint: str, name: str) -> requests.Response:
    return requests.get(f"{endpoint}/v1/{name}", timeout=30)


def list_jobs(endpoint: str) -> list[dict]:
    url = f"{endpoint}/v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs"
    return requests.get(url, timeout=30).json().get("tuningJobs", [])


# --- check -------------------------------------------------------------------------------------------

def test_check_names_each_bad_field():
    result = TuningJobProvider().check({}, inputs("https://x/t.jsonl", adapterSize=8, onDelete="delete",
                                                  baseModel="gemini"))
    reasons = {failure.property: failure.reason for failure in result.failures}
    assert set(reasons) == {"trainingDatasetUri", "adapterSize", "onDelete", "baseModel"}
    assert "supports adapter size 4 only, got 8" in reasons["adapterSize"]
    assert "gs://BUCKET/OBJECT" in reasons["trainingDatasetUri"]


@pytest.mark.parametrize("unknown", [UNKNOWN, Unknown()], ids=["wire-marker", "deserialised"])
def test_check_tolerates_unknown_values_during_preview(unknown):
    result = TuningJobProvider().check({}, inputs(unknown, validation_uri=unknown, labels={"team": unknown}))
    assert result.failures == []


def test_check_reports_a_bad_label_on_the_labels_input():
    result = TuningJobProvider().check({}, inputs("gs://bucket/t.jsonl", labels={"Team": "ml"}))
    assert [(failure.property, "lowercase" in failure.reason) for failure in result.failures] == [("labels", True)]


def test_check_requires_the_base_model():
    result = TuningJobProvider().check({}, {**inputs("gs://bucket/t.jsonl"), "baseModel": None})
    assert [(failure.property, failure.reason) for failure in result.failures] == [("baseModel", "is required")]


def test_check_rejects_a_malformed_adopt_name():
    result = TuningJobProvider().check({}, inputs("gs://bucket/t.jsonl", adoptJobName="tuningJobs/1"))
    assert [failure.property for failure in result.failures] == ["adoptJobName"]


# --- diff --------------------------------------------------------------------------------------------

def test_diff_replaces_on_any_api_field():
    olds = inputs("gs://bucket/t.jsonl")
    result = TuningJobProvider().diff("id", olds, {**olds, "epochCount": 3})
    assert (result.changes, result.replaces) == (True, ["epochCount"])


def test_diff_updates_in_place_for_provider_knobs():
    olds = inputs("gs://bucket/t.jsonl")
    result = TuningJobProvider().diff("id", olds, {**olds, "waitForCompletion": False, "onDelete": "abandon"})
    assert (result.changes, result.replaces) == (True, [])


def test_diff_ignores_server_filled_outputs():
    olds = {**inputs("gs://bucket/t.jsonl"), "state": "JOB_STATE_SUCCEEDED", "metrics": {"train_total_loss": 1.0}}
    result = TuningJobProvider().diff("id", olds, inputs("gs://bucket/t.jsonl"))
    assert result.changes is False


# --- create / read / update / delete -----------------------------------------------------------------

def test_create_waits_for_success_and_reports_six_metrics(emulator, sample_uris):
    provider = configured(emulator.url)
    result = provider.create(inputs(*sample_uris))
    outs = result.outs
    assert outs["state"] == "JOB_STATE_SUCCEEDED"
    assert result.id == outs["tuningJobName"]
    assert outs["tunedModelEndpointName"] and outs["tunedModelName"].endswith("@1")
    assert set(outs["metrics"]) == SIX_METRICS
    job = list_jobs(emulator.url)[0]
    assert job["labels"][IDEMPOTENCY_LABEL] and job["labels"]["team"] == "ml"


def test_read_of_a_finished_job_shows_no_drift(emulator, sample_uris):
    provider = configured(emulator.url)
    created = provider.create(inputs(*sample_uris))
    first = provider.read(created.id, created.outs)
    second = provider.read(created.id, first.outs)
    assert first.outs == created.outs == second.outs


def test_read_of_a_missing_job_reports_it_gone(emulator):
    name = f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/123"
    result = configured(emulator.url).read(name, {"tuningJobName": name})
    assert result.id == ""


def test_create_adopts_the_job_whose_create_response_was_lost(emulator, sample_uris):
    control(emulator, "POST", "faults", json={"pathRegex": "/tuningJobs$", "method": "POST", "status": 503,
                                              "times": 1, "afterHandler": True}).raise_for_status()
    result = configured(emulator.url).create(inputs(*sample_uris, waitForCompletion=False))
    assert [job["name"] for job in list_jobs(emulator.url)] == [result.id]


def test_create_does_not_adopt_a_cancelled_job_with_the_same_inputs(slow_emulator, tmp_path):
    from tests.conftest import SAMPLE_TRAIN, upload

    uri = upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)
    provider = configured(slow_emulator.url)
    first = provider.create(inputs(uri, waitForCompletion=False))
    provider.delete(first.id, first.outs)
    second = provider.create(inputs(uri, waitForCompletion=False))
    assert second.id != first.id
    provider.delete(second.id, second.outs)


def test_create_raises_job_failed_when_the_data_is_invalid(emulator, tmp_path):
    from tests.conftest import upload

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"contents": [{"role": "user", "parts": [{"text": "English: Hi. Spanish:"}]}]}\n')
    uri = upload(emulator, "datasets", "bad.jsonl", bad)
    with pytest.raises(JobFailedError, match=r"ended JOB_STATE_FAILED: .*bad.jsonl:1"):
        configured(emulator.url).create(inputs(uri))


def test_adopt_job_name_takes_over_an_existing_job(emulator, sample_uris):
    provider = configured(emulator.url)
    existing = provider.create(inputs(*sample_uris, waitForCompletion=False))
    adopted = provider.create(inputs(*sample_uris, idempotencyKey="other", adoptJobName=existing.id,
                                     waitForCompletion=False))
    assert adopted.id == existing.id
    assert len(list_jobs(emulator.url)) == 1


def test_update_carries_outputs_and_takes_new_knobs(emulator):
    olds = {**inputs("gs://bucket/t.jsonl"), "state": "JOB_STATE_SUCCEEDED", "metrics": {"train_total_loss": 1.0}}
    result = configured(emulator.url).update("id", olds, {**inputs("gs://bucket/t.jsonl"), "onDelete": "abandon"})
    assert result.outs["state"] == "JOB_STATE_SUCCEEDED" and result.outs["onDelete"] == "abandon"


def test_delete_cancels_a_running_job_and_waits_for_it(slow_emulator, tmp_path):
    from tests.conftest import SAMPLE_TRAIN, upload

    uri = upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)
    provider = configured(slow_emulator.url)
    created = provider.create(inputs(uri, waitForCompletion=False))
    provider.delete(created.id, created.outs)
    job = list_jobs(slow_emulator.url)[0]
    assert (job["state"], job["error"]["code"]) == ("JOB_STATE_CANCELLED", 1)


def test_delete_with_abandon_leaves_the_job_running(slow_emulator):
    from tests.conftest import SAMPLE_TRAIN, upload

    uri = upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)
    provider = configured(slow_emulator.url)
    created = provider.create(inputs(uri, waitForCompletion=False, onDelete="abandon"))
    provider.delete(created.id, created.outs)
    assert list_jobs(slow_emulator.url)[0]["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    configured(slow_emulator.url).delete(created.id, {**created.outs, "onDelete": "cancel"})


def test_delete_of_an_ended_or_missing_job_succeeds(emulator, sample_uris):
    provider = configured(emulator.url)
    created = provider.create(inputs(*sample_uris))
    provider.delete(created.id, created.outs)  # SUCCEEDED: nothing to cancel
    provider.delete(f"projects/{PROJECT}/locations/{LOCATION}/tuningJobs/404", {})
    assert list_jobs(emulator.url)[0]["state"] == "JOB_STATE_SUCCEEDED"


def test_delete_with_tuned_model_on_delete_removes_the_endpoint_and_the_model(emulator, sample_uris):
    provider = configured(emulator.url)
    created = provider.create(inputs(*sample_uris, tunedModelOnDelete="delete"))
    endpoint, model = created.outs["tunedModelEndpointName"], created.outs["tunedModelName"]
    assert vertex_get(emulator.url, endpoint).status_code == 200
    provider.delete(created.id, created.outs)
    assert vertex_get(emulator.url, endpoint).status_code == 404
    assert vertex_get(emulator.url, model.split("@")[0]).status_code == 404
    provider.delete(created.id, created.outs)  # again, as after an interrupted destroy: already gone is done


def test_delete_keeps_the_tuned_model_by_default(emulator, sample_uris):
    provider = configured(emulator.url)
    created = provider.create(inputs(*sample_uris))
    provider.delete(created.id, created.outs)
    assert vertex_get(emulator.url, created.outs["tunedModelEndpointName"]).status_code == 200
    assert vertex_get(emulator.url, created.outs["tunedModelName"].split("@")[0]).status_code == 200


def test_check_rejects_an_unknown_tuned_model_on_delete():
    result = TuningJobProvider().check({}, inputs("gs://bucket/t.jsonl", tunedModelOnDelete="undeploy"))
    assert [(failure.property, failure.reason) for failure in result.failures] == [
        ("tunedModelOnDelete", "must be 'keep' or 'delete', got 'undeploy'")]


def test_configured_target_is_never_pickled_into_the_state(emulator):
    pickled = base64.b64encode(dill.dumps(configured(emulator.url))).decode()
    assert str(emulator.port) not in base64.b64decode(pickled).decode("latin-1")


def test_create_stops_waiting_at_the_timeout_and_records_the_running_job(slow_emulator):
    from tests.conftest import SAMPLE_TRAIN, upload

    uri = upload(slow_emulator, "datasets", "train.jsonl", SAMPLE_TRAIN)
    provider = configured(slow_emulator.url)
    created = provider.create(inputs(uri, completionTimeoutSeconds=2))
    assert created.outs["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")
    assert created.outs["tunedModelEndpointName"] == ""
    provider.delete(created.id, created.outs)


def test_replacement_cancels_the_old_job_before_creating_the_new_one():
    olds = inputs("gs://bucket/t.jsonl")
    assert TuningJobProvider().diff("id", olds, {**olds, "epochCount": 3}).delete_before_replace is True


def test_read_keeps_the_last_metrics_when_the_metrics_api_fails(emulator, sample_uris, monkeypatch):
    from tuning.client import TuningApi

    provider = configured(emulator.url)
    created = provider.create(inputs(*sample_uris))

    def unavailable(self, job):
        raise RuntimeError("403 PERMISSION_DENIED on metadataStores")

    monkeypatch.setattr(TuningApi, "latest_metrics", unavailable)  # a metrics API this account may not reach
    read = provider.read(created.id, created.outs)
    assert read.outs["metrics"] == created.outs["metrics"] and read.outs["state"] == "JOB_STATE_SUCCEEDED"


def test_a_job_without_our_label_is_never_adopted_even_if_the_list_filter_is_ignored(emulator, sample_uris,
                                                                                      monkeypatch):
    from tuning.client import TuningApi

    provider = configured(emulator.url)
    foreign = provider.create(inputs(*sample_uris, idempotencyKey="someone-else", waitForCompletion=False))
    unfiltered = TuningApi.list_tuning_jobs

    def ignoring_filter(self, filter="", page_size=100):  # a server that ignores the label filter
        return unfiltered(self, "", page_size)

    monkeypatch.setattr(TuningApi, "list_tuning_jobs", ignoring_filter)
    ours = provider.create(inputs(*sample_uris, waitForCompletion=False))
    assert ours.id != foreign.id

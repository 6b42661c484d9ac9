"""tuning.vertex: what the project reads into the official aiplatform_v1 tuning types, on jobs built in place."""

from __future__ import annotations

import pytest
from google.cloud.aiplatform_v1 import JobState, SupervisedHyperParameters, TuningJob
from google.protobuf import json_format

from tuning.vertex import (
    adapter_size,
    adapter_size_number,
    experiment_id,
    from_rest_json,
    has_ended,
    state_name,
    to_rest_json,
)

AdapterSize = SupervisedHyperParameters.AdapterSize


def test_a_job_reads_camel_and_snake_case_int64_strings_and_enum_numbers():
    camel = from_rest_json({"baseModel": "m", "supervisedTuningSpec": {
        "trainingDatasetUri": "gs://b/t", "hyperParameters": {"epochCount": "3", "adapterSize": 2}}})
    snake = from_rest_json({"base_model": "m", "supervised_tuning_spec": {
        "training_dataset_uri": "gs://b/t", "hyper_parameters": {"epoch_count": 3,
                                                                 "adapter_size": "ADAPTER_SIZE_FOUR"}}})
    assert camel == snake
    assert camel.supervised_tuning_spec.hyper_parameters.adapter_size == AdapterSize.ADAPTER_SIZE_FOUR
    # The REST JSON: int64 as a string, enums by name, unset fields left out.
    assert to_rest_json(camel)["supervisedTuningSpec"]["hyperParameters"] == {"epochCount": "3",
                                                                              "adapterSize": "ADAPTER_SIZE_FOUR"}


def test_fields_this_api_version_lacks_are_ignored_and_bad_values_rejected():
    assert from_rest_json({"baseModel": "m", "somethingNew": {"x": 1}}).base_model == "m"
    with pytest.raises(json_format.ParseError):
        from_rest_json({"supervisedTuningSpec": {"hyperParameters": {"epochCount": "three"}}})


def test_adapter_sizes_are_numbers_although_the_enum_is_not_in_size_order():
    assert adapter_size(4) == AdapterSize.ADAPTER_SIZE_FOUR and int(AdapterSize.ADAPTER_SIZE_FOUR) == 2
    assert [adapter_size_number(adapter_size(size)) for size in (1, 2, 4, 8, 16, 32)] == [1, 2, 4, 8, 16, 32]
    assert adapter_size_number(AdapterSize.ADAPTER_SIZE_UNSPECIFIED) is None
    with pytest.raises(ValueError, match="adapter size 3 is not one of 1, 2, 4, 8, 16, 32"):
        adapter_size(3)


def test_expired_counts_as_ended_unlike_the_vertexai_sdk():
    assert has_ended(TuningJob(state=JobState.JOB_STATE_EXPIRED))
    assert not has_ended(TuningJob(state=JobState.JOB_STATE_CANCELLING))
    assert not has_ended(TuningJob())


def test_state_name_is_none_while_the_service_has_not_said():
    assert state_name(TuningJob(state=JobState.JOB_STATE_RUNNING)) == "JOB_STATE_RUNNING"
    assert state_name(TuningJob()) is None


def test_experiment_id_is_the_last_part_of_its_context_name():
    job = TuningJob(experiment="projects/p/locations/us-central1/metadataStores/default/contexts/tuning-experiment-7")
    assert experiment_id(job) == "tuning-experiment-7"

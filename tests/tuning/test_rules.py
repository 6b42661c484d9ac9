"""Create-request rules for translation-llm-002."""

from __future__ import annotations

import pytest

from tuning.rules import create_request_violations, label_violations, parse_gs_uri

VALID = dict(location="us-central1", base_model="translation-llm-002", training_dataset_uri="gs://bucket/t.jsonl")


def fields(**overrides) -> list[str]:
    return [violation.field for violation in create_request_violations(**{**VALID, **overrides})]


def test_a_valid_request_breaks_no_rule():
    assert create_request_violations(**VALID, validation_dataset_uri="gs://bucket/v.jsonl", adapter_size=4,
                                     epoch_count=3, learning_rate_multiplier=1.0, labels={"team": "ml"}) == []


@pytest.mark.parametrize("overrides, field", [
    ({"location": "europe-west4"}, "location"),
    ({"base_model": "gemini-2.0-flash"}, "baseModel"),
    ({"base_model": None}, "baseModel"),
    ({"training_dataset_uri": None}, "supervisedTuningSpec.trainingDatasetUri"),
    ({"training_dataset_uri": "/local/t.jsonl"}, "supervisedTuningSpec.trainingDatasetUri"),
    ({"validation_dataset_uri": "gs://bucket"}, "supervisedTuningSpec.validationDatasetUri"),
    ({"adapter_size": 8}, "supervisedTuningSpec.hyperParameters.adapterSize"),
    ({"epoch_count": 0}, "supervisedTuningSpec.hyperParameters.epochCount"),
    ({"learning_rate_multiplier": 0.0}, "supervisedTuningSpec.hyperParameters.learningRateMultiplier"),
    ({"tuned_model_display_name": "x" * 129}, "tunedModelDisplayName"),
])
def test_each_rule_names_its_field(overrides, field):
    assert fields(**overrides) == [field]


def test_label_rules():
    assert [v.field for v in label_violations({"Team": "a", "ok": "UPPER", "fine": "x-1_2"})] == ["labels.Team",
                                                                                                  "labels.ok"]


def test_parse_gs_uri_splits_bucket_and_object():
    assert parse_gs_uri("gs://my-bucket/a/b.jsonl") == ("my-bucket", "a/b.jsonl")
    with pytest.raises(ValueError, match="expected gs://BUCKET/OBJECT"):
        parse_gs_uri("s3://bucket/a")


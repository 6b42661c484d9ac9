"""Rules on the TuningDataset resource (`pulumi-python:dynamic/storage:TuningDataset`).

The dataset's `check` validates the file and adds `exampleCount` (and `sha256`, `bytes`, `estimatedTokens`) to
its inputs, so these rules see the real counts during preview, before anything is uploaded.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from shared import TUNING_DATASET, number, schema, settings, show, subject


def _dataset(args: ResourceValidationArgs, kind: str) -> bool:
    return args.resource_type == TUNING_DATASET and args.props.get("kind") == kind


def _examples(args: ResourceValidationArgs) -> int:
    return int(args.props.get("exampleCount") or 0)


# --- validation-dataset-max-examples -------------------------------------------------------------------------

VALIDATION_DEFAULTS = {"maxExamples": 1024}


def _validation_max_examples(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not _dataset(args, "validation"):
        return
    limit = settings(args.get_config(), VALIDATION_DEFAULTS)["maxExamples"]
    examples = _examples(args)
    if examples > limit:
        report_violation(f"{subject('TuningDataset', args.name)}: validation set {show(args.props.get('path'))} "
                         f"has {examples:,} examples; at most {number(limit)} are allowed (policy config maxExamples)")


validation_max_examples = ResourceValidationPolicy(
    name="validation-dataset-max-examples",
    description="A validation set holds at most maxExamples examples (Vertex AI allows 1,024).",
    validate=_validation_max_examples,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(VALIDATION_DEFAULTS,
                         maxExamples={"type": "integer", "minimum": 1, "description": "Most validation examples."}),
)


# --- training-dataset-recommended-size -----------------------------------------------------------------------

TRAINING_DEFAULTS = {"minExamples": 100}


def _training_recommended_size(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if not _dataset(args, "training"):
        return
    minimum = settings(args.get_config(), TRAINING_DEFAULTS)["minExamples"]
    examples = _examples(args)
    if examples < minimum:
        report_violation(f"{subject('TuningDataset', args.name)}: training set {show(args.props.get('path'))} "
                         f"has {examples:,} examples; at least {number(minimum)} are recommended "
                         "(policy config minExamples)")


training_recommended_size = ResourceValidationPolicy(
    name="training-dataset-recommended-size",
    description="A training set holds at least the recommended number of examples (Vertex AI: 100 to 500).",
    validate=_training_recommended_size,
    enforcement_level=EnforcementLevel.ADVISORY,
    config_schema=schema(TRAINING_DEFAULTS,
                         minExamples={"type": "integer", "minimum": 1,
                                      "description": "Fewest training examples recommended."}),
)

POLICIES = [validation_max_examples, training_recommended_size]

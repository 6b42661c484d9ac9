"""Rules on the TuningJob resource (`pulumi-python:dynamic/vertex:TuningJob`)."""

from __future__ import annotations

import pulumi
from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

TUNING_JOB = "pulumi-python:dynamic/vertex:TuningJob"
REQUIRED_LABELS = ("team", "env")


def _require_labels(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    labels = args.props.get("labels") or {}
    missing = [key for key in REQUIRED_LABELS if not labels.get(key)]
    if missing:
        # The stack name comes from the engine's ConfigureStack, through the language host's proxy.
        report_violation(f"TuningJob {args.name} (stack {pulumi.get_stack()}): labels {dict(labels)} lack "
                         f"{', '.join(missing)}; every tuning job names its owning team and its environment "
                         f"(set translation-tuning:labels)")


required_labels = ResourceValidationPolicy(
    name="tuning-job-required-labels",
    description="A tuning job carries the labels team and env, so its cost and owner can be traced.",
    validate=_require_labels,
)

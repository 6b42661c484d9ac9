"""Rules on the dataset bucket: `gcp:storage/bucket:Bucket` on GCP, `pulumi-python:dynamic/storage:EmulatorBucket`
on the emulator (which has a location and no access-control setting, so only the location rule applies to it).
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from shared import (
    DEFAULT_REGION,
    EMULATOR_BUCKET,
    GCP_BUCKET,
    one_of,
    schema,
    settings,
    show,
    string_list,
    subject,
    tuning_region,
)


def _bucket(args: ResourceValidationArgs) -> str:
    return subject("Bucket", args.name)


# --- bucket-uniform-access -----------------------------------------------------------------------------------

def _uniform_access(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != GCP_BUCKET:
        return
    uniform = args.props.get("uniformBucketLevelAccess")
    if uniform is not True:
        report_violation(f"{_bucket(args)}: uniformBucketLevelAccess is {show(bool(uniform))}; a dataset bucket "
                         "grants access with IAM only (uniform bucket-level access, no object ACLs)")


uniform_access = ResourceValidationPolicy(
    name="bucket-uniform-access",
    description="A GCS bucket uses uniform bucket-level access (IAM only, no object ACLs).",
    validate=_uniform_access,
    enforcement_level=EnforcementLevel.MANDATORY,
)


# --- bucket-location -----------------------------------------------------------------------------------------

LOCATION_DEFAULTS = {"allowedRegions": [DEFAULT_REGION]}


def _location(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (GCP_BUCKET, EMULATOR_BUCKET):
        return
    allowed = settings(args.get_config(), LOCATION_DEFAULTS)["allowedRegions"]
    location = args.props.get("location")
    region = tuning_region()
    # GCS reports locations in upper case (US-CENTRAL1); regions are lower case.
    if not isinstance(location, str) or location.lower() != region:
        report_violation(f"{_bucket(args)}: location {show(location)} is not the tuning job's region {show(region)} "
                         "(stack config gcp:region); the datasets live where the job runs")
    elif location.lower() not in allowed:
        report_violation(f"{_bucket(args)}: location {show(location)} is not an allowed tuning region (allowed: "
                         f"{one_of(allowed)}; policy config allowedRegions)")


location = ResourceValidationPolicy(
    name="bucket-location",
    description="The dataset bucket is in the tuning job's region, which is an allowed region.",
    validate=_location,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(LOCATION_DEFAULTS, allowedRegions=string_list("Regions the bucket may be in.")),
)

POLICIES = [uniform_access, location]

"""Rules on the TuningJob resource (`pulumi-python:dynamic/vertex:TuningJob`).

They read the job's inputs as the engine checked them, its resource options (`protect`), and the stack's
config (`gcp:region`, `translation-tuning:emulatorEndpoint`). What differs between environments is keyed on
the job's `env` label, never on the stack's name, so every rule runs the same against the emulator.
"""

from __future__ import annotations

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from shared import (
    DEFAULT_REGION,
    ENVIRONMENTS,
    PROJECT_NAMESPACE,
    TUNING_JOB,
    env_label,
    label_value_ok,
    number,
    one_of,
    schema,
    settings,
    show,
    stack_config,
    string_list,
    subject,
    tuning_region,
)

REQUIRED_LABELS = ("team", "env")


def _job(args: ResourceValidationArgs) -> str:
    return subject("TuningJob", args.name)


# --- tuning-job-required-labels --------------------------------------------------------------------------------

LABEL_DEFAULTS = {"allowedEnvironments": ENVIRONMENTS}


def _require_labels(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    config = settings(args.get_config(), LABEL_DEFAULTS)
    labels = args.props.get("labels") or {}
    missing = [key for key in REQUIRED_LABELS if not labels.get(key)]
    if missing:
        # The stack name comes from the engine's ConfigureStack, through the language host's proxy.
        report_violation(f"{_job(args)}: labels {dict(labels)} lack {', '.join(missing)}; every tuning job names "
                         f"its owning team and its environment (set {PROJECT_NAMESPACE}:labels)")
    for key in REQUIRED_LABELS:
        value = labels.get(key)
        if value and not label_value_ok(value):
            report_violation(f"{_job(args)}: label {key} {show(value)} breaks Google's label rules (at most 63 "
                             "lowercase letters, digits, '_' or '-')")
    env = labels.get("env")
    if env and env not in config["allowedEnvironments"]:
        report_violation(f"{_job(args)}: label env {show(env)} is not one of the environments "
                         f"{one_of(config['allowedEnvironments'])} (policy config allowedEnvironments)")


required_labels = ResourceValidationPolicy(
    name="tuning-job-required-labels",
    description="A tuning job carries the labels team and env (one of the known environments), so its cost "
                "and owner can be traced.",
    validate=_require_labels,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(LABEL_DEFAULTS,
                         allowedEnvironments=string_list("Values the env label may take.")),
)


# --- tuning-job-allowed-base-model -------------------------------------------------------------------------------

BASE_MODEL_DEFAULTS = {"allowedBaseModels": ["translation-llm-002"]}


def _allowed_base_model(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    allowed = settings(args.get_config(), BASE_MODEL_DEFAULTS)["allowedBaseModels"]
    model = args.props.get("baseModel")
    if model is not None and model not in allowed:  # none at all is the provider's check's error
        report_violation(f"{_job(args)}: baseModel {show(model)} is not an allowed base model (allowed: "
                         f"{one_of(allowed)}; policy config allowedBaseModels)")


allowed_base_model = ResourceValidationPolicy(
    name="tuning-job-allowed-base-model",
    description="A tuning job tunes one of the allowed base models (translation-llm-002).",
    validate=_allowed_base_model,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(BASE_MODEL_DEFAULTS, allowedBaseModels=string_list("Base models a job may tune.")),
)


# --- tuning-job-allowed-region -------------------------------------------------------------------------------

REGION_DEFAULTS = {"allowedRegions": [DEFAULT_REGION]}


def _allowed_region(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    allowed = settings(args.get_config(), REGION_DEFAULTS)["allowedRegions"]
    region = tuning_region()
    if region not in allowed:
        report_violation(f"{_job(args)}: region {show(region)} (stack config gcp:region) is not an allowed tuning "
                         f"region (allowed: {one_of(allowed)}; policy config allowedRegions)")


allowed_region = ResourceValidationPolicy(
    name="tuning-job-allowed-region",
    description="A tuning job runs in an allowed region (translation tuning runs in us-central1).",
    validate=_allowed_region,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(REGION_DEFAULTS, allowedRegions=string_list("Regions a job may run in.")),
)


# --- tuning-job-prod-safeguards ------------------------------------------------------------------------------

SAFEGUARD_DEFAULTS = {"protectedEnvironments": ["prod"]}


def _prod_safeguards(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    env = env_label(args.props)
    if env not in settings(args.get_config(), SAFEGUARD_DEFAULTS)["protectedEnvironments"]:
        return
    rule = f"a job with env {show(env)}"
    if not args.opts.protect:
        report_violation(f"{_job(args)}: protect is false; {rule} is protected from deletion "
                         f"(set {PROJECT_NAMESPACE}:protectJob true)")
    on_delete = args.props.get("onDelete") or "cancel"
    if on_delete != "abandon":
        report_violation(f"{_job(args)}: onDelete is {show(on_delete)}; {rule} is abandoned, never cancelled, "
                         f"by destroy (set {PROJECT_NAMESPACE}:onDelete abandon)")
    tuned_model_on_delete = args.props.get("tunedModelOnDelete") or "keep"
    if tuned_model_on_delete != "keep":
        report_violation(f"{_job(args)}: tunedModelOnDelete is {show(tuned_model_on_delete)}; {rule} keeps its "
                         f"tuned model and endpoint on destroy (set {PROJECT_NAMESPACE}:tunedModelOnDelete keep)")
    wait = args.props.get("waitForCompletion")
    if wait is None or wait:  # the provider's default is to wait
        report_violation(f"{_job(args)}: waitForCompletion is {show(True if wait is None else wait)}; {rule} does "
                         f"not block `up` for hours (set {PROJECT_NAMESPACE}:waitForCompletion false)")


prod_safeguards = ResourceValidationPolicy(
    name="tuning-job-prod-safeguards",
    description="A production tuning job is protected, abandoned (not cancelled) by destroy, keeps its tuned "
                "model on destroy, and does not make `up` wait for it.",
    validate=_prod_safeguards,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(SAFEGUARD_DEFAULTS,
                         protectedEnvironments=string_list("env labels the safeguards apply to.")),
)


# --- tuning-job-hyperparameter-bounds ------------------------------------------------------------------------

HYPERPARAMETER_DEFAULTS = {"minEpochCount": 1, "maxEpochCount": 20,
                           "minLearningRateMultiplier": 0.1, "maxLearningRateMultiplier": 10}


def _hyperparameter_bounds(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    config = settings(args.get_config(), HYPERPARAMETER_DEFAULTS)
    for name, low_key, high_key in (("epochCount", "minEpochCount", "maxEpochCount"),
                                    ("learningRateMultiplier", "minLearningRateMultiplier",
                                     "maxLearningRateMultiplier")):
        value = args.props.get(name)
        if value is None:  # unset: the service's default
            continue
        low, high = config[low_key], config[high_key]
        if not low <= value <= high:
            report_violation(f"{_job(args)}: {name} {show(value)} is outside {number(low)}..{number(high)} "
                             f"(policy config {low_key}, {high_key})")


hyperparameter_bounds = ResourceValidationPolicy(
    name="tuning-job-hyperparameter-bounds",
    description="Epochs and the learning-rate multiplier stay within bounds; unset means the service's default.",
    validate=_hyperparameter_bounds,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(
        HYPERPARAMETER_DEFAULTS,
        minEpochCount={"type": "integer", "minimum": 1, "description": "Fewest epochs."},
        maxEpochCount={"type": "integer", "minimum": 1, "description": "Most epochs."},
        minLearningRateMultiplier={"type": "number", "minimum": 0, "description": "Smallest learning-rate multiplier."},
        maxLearningRateMultiplier={"type": "number", "minimum": 0, "description": "Largest learning-rate multiplier."}),
)


# --- tuning-job-emulator-local-only --------------------------------------------------------------------------

EMULATOR_DEFAULTS = {"emulatorEnvironments": ["local"]}
EMULATOR_KEY = f"{PROJECT_NAMESPACE}:emulatorEndpoint"


def _emulator_local_only(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != TUNING_JOB:
        return
    endpoint = stack_config(EMULATOR_KEY)
    if endpoint is None:
        return
    allowed = settings(args.get_config(), EMULATOR_DEFAULTS)["emulatorEnvironments"]
    env = env_label(args.props)
    if env not in allowed:
        report_violation(f"{_job(args)}: stack config {EMULATOR_KEY} is {show(endpoint)} but label env is "
                         f"{show(env)}; only env {one_of(allowed)} may run against the emulator (unset "
                         f"{EMULATOR_KEY} to tune on Vertex AI)")


emulator_local_only = ResourceValidationPolicy(
    name="tuning-job-emulator-local-only",
    description="Only a job labelled env local runs against the emulator: a dev or prod job tunes on Vertex AI.",
    validate=_emulator_local_only,
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=schema(EMULATOR_DEFAULTS,
                         emulatorEnvironments=string_list("env labels that may use an emulator endpoint.")),
)

POLICIES = [required_labels, allowed_base_model, allowed_region, prod_safeguards, hyperparameter_bounds,
            emulator_local_only]

"""TuningJob: a Vertex AI supervised tuning job as a Pulumi dynamic resource.

create/read/delete map to tuningJobs create/get/cancel (there is no update or delete RPC); every API
field is therefore a replace, and provider-only knobs (waiting, timeout, on-delete policy) never are.
The lifecycle is specified in docs/design.md ("The TuningJob resource").

The API models (pydantic) and the client are imported by the methods that call the API: the provider process
imports this module for every check and diff, and a no-op preview makes no other call.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import TYPE_CHECKING, Any, Optional, TypedDict

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
    UpdateResult,
)

from resources.provider_process import Cancelled, sleep_unless_cancelled
from resources.target import TargetedProvider, is_unknown
from tuning.errors import ApiCallError, ApiError, JobFailedError, NotFoundError, TuningError, WaitTimeoutError
from tuning.rules import create_request_violations

if TYPE_CHECKING:
    from google.cloud.aiplatform_v1 import TuningJob as TuningJobMessage

    from tuning.api_target import ApiTarget
    from tuning.client import TuningApi

# `google.cloud.aiplatform_v1` (the wire types, through `tuning.vertex`) takes about a second to load: it is imported
# inside create, read and delete, so that check and diff, which are all a no-op `pulumi preview` runs, never load it.
# So are the waits' helpers (`tuning.polling`, `tuning.progress`): a few milliseconds of every provider process.

# Inputs sent to tuningJobs.create: changing any of them needs a new job.
API_INPUTS = ("baseModel", "trainingDatasetUri", "validationDatasetUri", "tunedModelDisplayName", "description",
              "epochCount", "learningRateMultiplier", "adapterSize", "labels")
# Inputs only this provider reads: a change is an in-place update that never touches the job.
PROVIDER_INPUTS = ("waitForCompletion", "completionTimeoutSeconds", "onDelete", "tunedModelOnDelete")
# Changing these means "a different job" as well.
IDENTITY_INPUTS = ("idempotencyKey", "adoptJobName")
OUTPUTS = ("tuningJobName", "state", "tunedModelName", "tunedModelEndpointName", "experiment", "metrics", "error",
           "createTime")

IDEMPOTENCY_LABEL = "pulumi-tuning-key"
# The form of `GenAiTuningServiceClient.tuning_job_path`, matched here because check runs in preview (see above).
_JOB_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/tuningJobs/[^/]+$")
# States (JobState names) of a job that a retried create may adopt: anything that did not end badly.
_ADOPTABLE = ("JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED")
CANCEL_WAIT_SECONDS = 120


class TuningJobArgs(TypedDict, total=False):
    """Inputs of a TuningJob."""

    baseModel: pulumi.Input[str]
    """Base model; translation-llm-002."""
    trainingDatasetUri: pulumi.Input[str]
    """gs:// URI of the training JSONL."""
    validationDatasetUri: pulumi.Input[Optional[str]]
    """gs:// URI of the validation JSONL (optional; enables the eval metrics)."""
    tunedModelDisplayName: pulumi.Input[Optional[str]]
    """Display name of the tuned model (≤ 128 characters)."""
    description: pulumi.Input[Optional[str]]
    """Free-text description of the job."""
    epochCount: pulumi.Input[Optional[int]]
    """Epochs (service default when unset)."""
    learningRateMultiplier: pulumi.Input[Optional[float]]
    """Learning-rate multiplier (service default when unset)."""
    adapterSize: pulumi.Input[Optional[int]]
    """Adapter size; translation-llm-002 supports 4 only."""
    labels: pulumi.Input[dict[str, str]]
    """Labels on the job (Google label rules)."""
    idempotencyKey: pulumi.Input[str]
    """Stable per stack and resource; a retried create adopts the job carrying it."""
    adoptJobName: pulumi.Input[Optional[str]]
    """Take over this existing job instead of creating one."""
    waitForCompletion: pulumi.Input[bool]
    """Wait (bounded) for the job to end during create."""
    completionTimeoutSeconds: pulumi.Input[int]
    """Upper bound of that wait."""
    onDelete: pulumi.Input[str]
    """`cancel` (default) a still-running job on destroy, or `abandon` it."""
    tunedModelOnDelete: pulumi.Input[str]
    """`keep` (default) the tuned model and its endpoint on destroy, or `delete` them (undeploy first)."""


def idempotency_label_value(props: dict[str, Any]) -> str:
    """Label value unique to (stack, resource, API inputs): same request → same job; new inputs → new job."""
    canonical = json.dumps({key: props.get(key) for key in (*API_INPUTS, "idempotencyKey")}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


def job_request(props: dict[str, Any]) -> TuningJobMessage:
    """The tuningJobs.create body for these inputs, with the idempotency label added."""
    from google.cloud import aiplatform_v1

    from tuning.vertex import adapter_size

    # Unset inputs stay unset (proto3 leaves out zero values): the service applies its defaults.
    hyper = aiplatform_v1.SupervisedHyperParameters(
        epoch_count=int(props.get("epochCount") or 0),  # struct numbers arrive as floats from the engine
        learning_rate_multiplier=props.get("learningRateMultiplier") or 0.0,
        adapter_size=adapter_size(int(props["adapterSize"])) if props.get("adapterSize") else 0)
    return aiplatform_v1.TuningJob(
        base_model=props["baseModel"],
        supervised_tuning_spec=aiplatform_v1.SupervisedTuningSpec(
            training_dataset_uri=props["trainingDatasetUri"],
            validation_dataset_uri=props.get("validationDatasetUri") or "", hyper_parameters=hyper),
        tuned_model_display_name=props.get("tunedModelDisplayName") or "",
        description=props.get("description") or "",
        labels={**(props.get("labels") or {}), IDEMPOTENCY_LABEL: idempotency_label_value(props)},
    )


def job_outputs(api: TuningApi, job: TuningJobMessage, previous_metrics: Optional[dict] = None) -> dict[str, Any]:
    """Output properties of a job as the stack exports them (SDK names in camelCase).

    Metrics are best effort: they live in another API (the job's experiment), and failing to read
    them must not fail a create whose job exists, nor every refresh. The last known values stay.
    """
    from tuning.vertex import state_name, to_rest_json

    tuned = job.tuned_model
    try:
        metrics = api.latest_metrics(job)
    except Exception as error:  # noqa: BLE001 - any failure of the metrics path is reported, not fatal
        pulumi.log.warn(f"could not read the metrics of tuning job {job.name}: {error}")
        metrics = previous_metrics or {}
    return {
        "tuningJobName": job.name,
        "state": state_name(job),
        "tunedModelName": tuned.model,
        "tunedModelEndpointName": tuned.endpoint,
        "experiment": job.experiment,
        "metrics": metrics,
        "error": job.error.message,
        "createTime": to_rest_json(job).get("createTime"),  # RFC 3339, as the REST API writes it
    }


class TuningJobProvider(TargetedProvider, ResourceProvider):
    """Maps Pulumi's check/diff/create/read/update/delete onto tuningJobs create/get/cancel."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        # During preview some inputs are unknown (outputs of resources not yet created): check the
        # rest and leave those to the check that runs again once they are known.
        unknown = {key for key, value in news.items() if is_unknown(value)}
        known = {key: value for key, value in news.items() if key not in unknown}
        adapter_size = known.get("adapterSize")
        failures = [
            CheckFailure(_input_name(violation.field), violation.message)
            for violation in create_request_violations(
                location=None, base_model=known.get("baseModel"),
                training_dataset_uri=known.get("trainingDatasetUri"),
                validation_dataset_uri=known.get("validationDatasetUri") or None,
                # Struct numbers arrive as floats from the engine.
                adapter_size=int(adapter_size) if adapter_size is not None else None,
                epoch_count=known.get("epochCount"), learning_rate_multiplier=known.get("learningRateMultiplier"),
                tuned_model_display_name=known.get("tunedModelDisplayName"), labels=known.get("labels"))
            if _input_name(violation.field) not in unknown
        ]
        if known.get("onDelete", "cancel") not in ("cancel", "abandon"):
            failures.append(CheckFailure("onDelete", f"must be 'cancel' or 'abandon', got {known['onDelete']!r}"))
        if known.get("tunedModelOnDelete", "keep") not in ("keep", "delete"):
            failures.append(CheckFailure("tunedModelOnDelete",
                                         f"must be 'keep' or 'delete', got {known['tunedModelOnDelete']!r}"))
        timeout = known.get("completionTimeoutSeconds", 3600)
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            failures.append(CheckFailure("completionTimeoutSeconds", f"must be a positive number, got {timeout!r}"))
        adopt = known.get("adoptJobName")
        if adopt and not _JOB_NAME.match(adopt):
            failures.append(CheckFailure("adoptJobName", "expected projects/P/locations/L/tuningJobs/ID, "
                                                         f"got {adopt!r}"))
        return CheckResult(news, failures)

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in (*API_INPUTS, *IDENTITY_INPUTS) if _normalised(olds.get(key)) !=
                    _normalised(news.get(key))]
        updates = [key for key in PROVIDER_INPUTS if olds.get(key) != news.get(key)]
        # Delete (cancel) the old job first: created first, the replacement could adopt the very job
        # that is about to be cancelled, as its idempotency label may be the same (`up --replace`).
        return DiffResult(changes=bool(replaces or updates), replaces=replaces, delete_before_replace=True,
                          stables=list(OUTPUTS) if not replaces else [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        api = self.tuning_api()
        if props.get("adoptJobName"):
            job = api.get_tuning_job(props["adoptJobName"])
            if job is None:
                raise NotFoundError("tuning job", props["adoptJobName"],
                                    f"adoptJobName: tuning job {props['adoptJobName']} does not exist")
        else:
            from tuning.vertex import JobState

            job, created = api.create_or_adopt(job_request(props), IDEMPOTENCY_LABEL, idempotency_label_value(props),
                                               adoptable={JobState[name] for name in _ADOPTABLE})
            if not created:
                pulumi.log.info(f"adopted tuning job {job.name} left by an interrupted earlier create")
        if props.get("waitForCompletion"):
            job = self._wait(api, job, float(props.get("completionTimeoutSeconds") or 3600))
        return CreateResult(job.name, {**props, **job_outputs(api, job)})

    def _wait(self, api: TuningApi, job: TuningJobMessage, timeout: float) -> TuningJobMessage:
        """Poll until the job ends (or `timeout`), logging its progress; the end is noticed within
        max(2 s, 10% of the job's elapsed time), at most 30 s late on GCP (10 s on the emulator)."""
        from tuning.polling import DeadlineExceeded, poll_until
        from tuning.progress import ProgressLog, ProportionalBackoff, elapsed_seconds, job_progress
        from tuning.vertex import JobState, has_ended

        on_emulator = bool(self.target.emulator_endpoint)
        progress_log = ProgressLog(interval=10.0 if on_emulator else 60.0)

        def report(current: TuningJobMessage) -> None:
            # The metrics are another API (the experiment on GCP): read them only when a line is due.
            if not (progress_log.due() or has_ended(current)):
                return
            try:
                series = api.metric_series(current)
            except (ApiCallError, ApiError):
                series = {}  # progress is informative; the wait goes on without the step and loss
            line = progress_log.line_for(job_progress(current, series), current.name)
            if line:
                pulumi.log.info(line)

        schedule = ProportionalBackoff(fraction=0.1, minimum=2.0, maximum=10.0 if on_emulator else 30.0,
                                       already_elapsed=elapsed_seconds(job))
        try:
            job = poll_until(lambda: api.get_tuning_job(job.name) or job, has_ended, timeout=timeout,
                             backoff=schedule, on_poll=report, sleep=sleep_unless_cancelled)
        except Cancelled:
            raise WaitInterrupted(job.name) from None
        except ApiCallError as error:
            # Each poll retries on its own; this one kept failing. The job itself is fine and carries our label.
            raise error.with_advice(f"{error.advice + '; ' if error.advice else ''}tuning job {job.name} keeps "
                                    "running: the next `pulumi up` adopts it") from error
        except DeadlineExceeded as exceeded:
            # The job keeps running and is recorded in the state; `pulumi refresh` picks up its end.
            pulumi.log.warn(f"tuning job {job.name} still running after {timeout:.0f}s; not waiting longer")
            last: TuningJobMessage = exceeded.last
            return last
        if job.state != JobState.JOB_STATE_SUCCEEDED:
            raise JobFailedError(job.name, job.state.name, job.error.message or "no error message")
        return job

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        api = self.tuning_api()
        job = api.get_tuning_job(id_)
        if job is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **job_outputs(api, job, props.get("metrics"))})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, **{key: news.get(key) for key in PROVIDER_INPUTS}})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        from tuning.vertex import has_ended

        api = self.tuning_api()
        job = api.get_tuning_job(id_)
        if job is None:
            return
        if not has_ended(job):
            if props.get("onDelete") == "abandon":
                pulumi.log.info(f"onDelete=abandon: leaving tuning job {id_} as it is")
                return
            job = self._cancel(api, job)
        if props.get("tunedModelOnDelete") == "delete" and (job.tuned_model.endpoint or job.tuned_model.model):
            delete_tuned_model(self.target, job.tuned_model.endpoint, job.tuned_model.model)

    def _cancel(self, api: TuningApi, job: TuningJobMessage) -> TuningJobMessage:
        """Cancel a job and wait for the cancel to land, so that nothing is left running when destroy reports
        success. CANCELLING is accepted after the wait: the service has taken the cancel and only it can finish
        it. Returns the job as last seen (it may have succeeded in the meantime)."""
        from tuning.polling import Backoff, DeadlineExceeded, poll_until
        from tuning.vertex import JobState, has_ended

        api.cancel_tuning_job(job.name)
        try:
            return poll_until(lambda: api.get_tuning_job(job.name) or job, has_ended,
                              timeout=CANCEL_WAIT_SECONDS, backoff=Backoff(initial=0.5, maximum=5.0))
        except DeadlineExceeded as exceeded:
            last: TuningJobMessage = exceeded.last
            if last.state != JobState.JOB_STATE_CANCELLING:
                raise WaitTimeoutError(f"tuning job {job.name} is still {last.state.name} "
                                       f"{CANCEL_WAIT_SECONDS}s after it was cancelled", CANCEL_WAIT_SECONDS) from None
            pulumi.log.warn(f"tuning job {job.name} is still CANCELLING after {CANCEL_WAIT_SECONDS}s; the service "
                            "finishes the cancel")
            return last


class WaitInterrupted(TuningError):
    """`up` was interrupted (Ctrl-C) while it waited for the job, which goes on running."""

    def __init__(self, job_name: str) -> None:
        super().__init__(f"interrupted: stopped waiting for tuning job {job_name}, which keeps running; the next "
                         f"`pulumi up` adopts it (to stop it: python -m tuning jobs cancel {job_name})")


def delete_tuned_model(target: ApiTarget, endpoint: Optional[str], model: Optional[str]) -> None:
    """tunedModelOnDelete=delete: undeploy and delete the tuned endpoint, then delete the tuned model.

    The endpoint goes first: a model that is still deployed cannot be deleted. What is already gone counts as
    deleted, so a destroy that was interrupted half-way finishes on the next run.
    """
    from tuning.models_api import ModelsApi  # the Model and Endpoint clients load only when something is deleted

    api = ModelsApi(target)
    if endpoint:
        try:
            for deployed_model_id in api.undeploy_all(endpoint):
                pulumi.log.info(f"undeployed {deployed_model_id} from {endpoint}")
            api.delete_endpoint(endpoint)
            pulumi.log.info(f"deleted tuned endpoint {endpoint} (tunedModelOnDelete=delete)")
        except NotFoundError:
            pass
    if model:
        try:
            # The tuned model has one version (@1): deleting the model deletes it.
            api.delete_model(model.split("@", 1)[0])
            pulumi.log.info(f"deleted tuned model {model} (tunedModelOnDelete=delete)")
        except NotFoundError:
            pass


def _input_name(field: str) -> str:
    """Map a create-request field path (`supervisedTuningSpec.hyperParameters.epochCount`, `labels.team`)
    to this resource's input name (`epochCount`, `labels`)."""
    if field.startswith("labels"):
        return "labels"
    return field.rsplit(".", 1)[-1]


def _normalised(value: Any) -> Any:
    return None if value in ("", {}, []) else value


class TuningJob(Resource, module="vertex", name="TuningJob"):
    """A supervised tuning job of translation-llm-002 and the tuned model/endpoint it produces."""

    tuningJobName: pulumi.Output[str]  # noqa: N815 (output names are the SDK's camelCase names)
    state: pulumi.Output[str]
    tunedModelName: pulumi.Output[str]  # noqa: N815
    tunedModelEndpointName: pulumi.Output[str]  # noqa: N815
    experiment: pulumi.Output[str]
    metrics: pulumi.Output[dict]
    error: pulumi.Output[str]

    def __init__(self, name: str, args: TuningJobArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(TuningJobProvider(), name, {**args, **{key: None for key in OUTPUTS}}, opts)

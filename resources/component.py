"""TranslationTuning: bucket → validated dataset uploads → tuning job, as one component."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, TypeVar

import pulumi

from resources.bucket import tuning_bucket
from resources.dataset import TuningDataset
from resources.evaluation import TranslationEvaluation
from resources.settings import StackSettings, dataset_path, secret_config_fields
from resources.tuning_job import TuningJob, TuningJobArgs
from tuning.dataset import DatasetKind, validate_file

T = TypeVar("T")

# TuningJob inputs taken from a stack setting as they are, by the StackSettings field they come from.
_JOB_INPUT_FIELDS = {"baseModel": "base_model", "tunedModelDisplayName": "tuned_model_display_name",
                     "epochCount": "epoch_count", "learningRateMultiplier": "learning_rate_multiplier",
                     "adapterSize": "adapter_size", "labels": "labels"}


class TranslationTuning(pulumi.ComponentResource):
    """Everything one supervised tuning run of translation-llm-002 needs, declared from stack settings."""

    def __init__(self, name: str, settings: StackSettings, *, project_dir: Path, stack: str,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("translation-tuning:index:TranslationTuning", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        datasets: dict[DatasetKind, Path] = {"training": dataset_path(settings.training_dataset, project_dir)}
        if settings.validation_dataset:
            datasets["validation"] = dataset_path(settings.validation_dataset, project_dir)
        evaluation_path = (dataset_path(settings.evaluation_dataset, project_dir) if settings.evaluation_dataset
                           else datasets.get("validation"))
        # Fail before anything is declared: the engine would create the bucket while the datasets'
        # own check (which validates again, as the source of truth) is still running.
        for kind, path in datasets.items():
            validate_file(path, kind=kind).raise_for_problems()
        if evaluation_path is not None and evaluation_path != datasets.get("validation"):
            validate_file(evaluation_path, kind="validation").raise_for_problems()

        bucket = tuning_bucket(f"{name}-bucket", settings.resolved_bucket_name(stack), settings, child)
        self.bucket_name = bucket.name
        self.training_dataset = TuningDataset(f"{name}-training-data", {
            "path": str(datasets["training"]), "kind": "training",
            "bucket": self.bucket_name, "prefix": settings.dataset_prefix}, child)
        self.validation_dataset = None
        if "validation" in datasets:
            self.validation_dataset = TuningDataset(f"{name}-validation-data", {
                "path": str(datasets["validation"]), "kind": "validation",
                "bucket": self.bucket_name, "prefix": settings.dataset_prefix}, child)

        # A value set with `pulumi config set --secret` stays a secret in the job's inputs and outputs.
        secret_fields = secret_config_fields()
        secret_inputs = sorted(job_input for job_input, field in _JOB_INPUT_FIELDS.items() if field in secret_fields)

        def job_input(key: str, value: T) -> pulumi.Input[T]:
            """The value of one of the `_JOB_INPUT_FIELDS` inputs, as a secret when it is set from a secret."""
            return pulumi.Output.secret(value) if key in secret_inputs and value is not None else value

        # The job reads the datasets as the tuning service agent: wait until it may.
        job_opts = pulumi.ResourceOptions(parent=self, protect=settings.protect_job, depends_on=bucket.access,
                                          additional_secret_outputs=secret_inputs)
        job_args: TuningJobArgs = {
            "baseModel": job_input("baseModel", settings.base_model),
            "trainingDatasetUri": self.training_dataset.uri,
            "validationDatasetUri": self.validation_dataset.uri if self.validation_dataset else None,
            "tunedModelDisplayName": job_input("tunedModelDisplayName",
                                               settings.tuned_model_display_name or f"{name}-{stack}"),
            "epochCount": job_input("epochCount", settings.epoch_count),
            "learningRateMultiplier": job_input("learningRateMultiplier", settings.learning_rate_multiplier),
            "adapterSize": job_input("adapterSize", settings.adapter_size),
            "labels": job_input("labels", settings.labels),
            "idempotencyKey": hashlib.sha256(f"{pulumi.get_project()}/{stack}/{name}".encode()).hexdigest()[:32],
            "waitForCompletion": settings.wait_for_completion,
            "completionTimeoutSeconds": settings.completion_timeout,
            "onDelete": settings.on_delete,
            "tunedModelOnDelete": settings.resolved_tuned_model_on_delete,
        }
        self.job = TuningJob(f"{name}-job", job_args, job_opts)

        # Scores the tuned endpoint against the base model once the job has produced it; stops `up` below minChrf.
        self.evaluation = None
        if evaluation_path is not None:
            self.evaluation = TranslationEvaluation(f"{name}-evaluation", {
                "endpoint": self.job.tunedModelEndpointName, "baseModel": settings.base_model,
                "datasetPath": str(evaluation_path), "minChrf": settings.min_chrf, "concurrency": 8}, child)
        self.register_outputs({"bucketName": self.bucket_name, "tuningJobName": self.job.tuningJobName})

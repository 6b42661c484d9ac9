"""The translation-tuning stack: read settings once, compose the component, export its outputs."""

from pathlib import Path

import pulumi

from resources.component import TranslationTuning
from resources.errors import reported_without_traceback
from resources.settings import read_stack_settings

with reported_without_traceback():
    settings = read_stack_settings()
    tuning = TranslationTuning("translation", settings, project_dir=Path(__file__).resolve().parent,
                               stack=pulumi.get_stack())

pulumi.export("bucketName", tuning.bucket_name)
pulumi.export("trainingDatasetUri", tuning.training_dataset.uri)
pulumi.export("validationDatasetUri", tuning.validation_dataset.uri if tuning.validation_dataset else None)
pulumi.export("tuningJobName", tuning.job.tuningJobName)
pulumi.export("state", tuning.job.state)
pulumi.export("tunedModelName", tuning.job.tunedModelName)
pulumi.export("tunedModelEndpointName", tuning.job.tunedModelEndpointName)
pulumi.export("experiment", tuning.job.experiment)
pulumi.export("metrics", tuning.job.metrics)

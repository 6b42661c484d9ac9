"""The translation-tuning stack: read settings once, start the embedded emulator if asked, compose, export."""

from pathlib import Path

import pulumi

from resources.component import TranslationTuning
from resources.embedded import start_embedded_emulator
from resources.program_exit import reported_without_traceback, stop_quietly_on_interrupt
from resources.settings import read_stack_settings

PROJECT_DIR = Path(__file__).resolve().parent
stop_quietly_on_interrupt(PROJECT_DIR)

with reported_without_traceback():
    settings = read_stack_settings()
    start_embedded_emulator(settings, PROJECT_DIR)
    tuning = TranslationTuning("translation", settings, project_dir=PROJECT_DIR, stack=pulumi.get_stack())

pulumi.export("bucketName", tuning.bucket_name)
pulumi.export("trainingDatasetUri", tuning.training_dataset.uri)
pulumi.export("validationDatasetUri", tuning.validation_dataset.uri if tuning.validation_dataset else None)
pulumi.export("tuningJobName", tuning.job.tuningJobName)
pulumi.export("state", tuning.job.state)
pulumi.export("tunedModelName", tuning.job.tunedModelName)
pulumi.export("tunedModelEndpointName", tuning.job.tunedModelEndpointName)
pulumi.export("experiment", tuning.job.experiment)
pulumi.export("metrics", tuning.job.metrics)
# {examples, tuned: {bleu, chrf}, base: {bleu, chrf}, samples}; null without an evaluation set or a tuned endpoint.
pulumi.export("evaluation", tuning.evaluation.evaluation if tuning.evaluation else None)
# {uri, examples, estimatedTokens, bytes, sha256}; everything but `uri` is known during preview.
pulumi.export("trainingDataset", tuning.training_dataset.facts())
pulumi.export("validationDataset", tuning.validation_dataset.facts() if tuning.validation_dataset else None)

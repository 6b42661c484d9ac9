"""The translation-tuning policy pack: rules the engine checks on every preview and up."""

from pulumi_policy import EnforcementLevel, PolicyPack

from tuning_job_rules import required_labels

PolicyPack(
    name="translation-tuning",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[required_labels],
)

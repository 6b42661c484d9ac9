"""The translation-tuning policy pack: rules the engine checks on every preview and up.

One module per resource kind; each policy's enforcement level and bounds can be set per environment with
`--policy-pack-config policy/config/ENV.json` (see README.md in this folder).
"""

from pulumi_policy import EnforcementLevel, PolicyPack

import bucket_rules
import dataset_rules
import tuning_job_rules

PolicyPack(
    name="translation-tuning",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*tuning_job_rules.POLICIES, *dataset_rules.POLICIES, *bucket_rules.POLICIES],
)

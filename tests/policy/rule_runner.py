"""Calls the pack's rules directly, in the pack's own venv (`policy/venv/bin/python rule_runner.py`).

Only for what no stack on the emulator can declare: a `gcp:storage/bucket:Bucket` (the gcp plugin is not
available offline) and label values the program refuses before it declares anything. Everything else is
tested through the real engine (test_policies.py).

stdin: {"cases": [{"policy", "type", "name", "props", "protect"?, "config"?, "stackConfig"?}, ...]}
stdout: {"messages": [[message, ...] per case], "policies": {name: {"enforcementLevel", "properties"}}}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
sys.path.insert(0, str(POLICY_DIR))

import pulumi  # noqa: E402 (after the path: the pack's modules import each other by name)
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs  # noqa: E402

import bucket_rules  # noqa: E402
import dataset_rules  # noqa: E402
import tuning_job_rules  # noqa: E402

POLICIES = {policy.name: policy for policy in
            [*tuning_job_rules.POLICIES, *dataset_rules.POLICIES, *bucket_rules.POLICIES]}


def run(case: dict) -> list[str]:
    pulumi.runtime.configure(pulumi.runtime.Settings(project="translation-tuning", stack="offline", dry_run=True))
    pulumi.runtime.config.CONFIG.set({})
    pulumi.runtime.set_all_config(case.get("stackConfig", {}))
    options = PolicyResourceOptions(case.get("protect", False), [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    args = ResourceValidationArgs(case["type"], case["props"], f"urn:pulumi:offline::translation-tuning::"
                                  f"{case['type']}::{case['name']}", case["name"], options, None, case.get("config"))
    messages: list[str] = []
    POLICIES[case["policy"]].validate(args, lambda message, urn=None: messages.append(message))
    return messages


def main() -> None:
    request = json.load(sys.stdin)
    policies = {name: {"enforcementLevel": policy.enforcement_level.value,
                       "properties": sorted(policy.config_schema.properties) if policy.config_schema else []}
                for name, policy in POLICIES.items()}
    json.dump({"messages": [run(case) for case in request["cases"]], "policies": policies}, sys.stdout)


if __name__ == "__main__":
    main()

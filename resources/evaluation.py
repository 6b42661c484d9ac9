"""TranslationEvaluation: the tuned model's translation quality against the base model's, and the `minChrf` gate.

A dynamic resource after the tuning job. Create translates the evaluation set with the tuned endpoint and with
the base model and scores both (`tuning.evaluation`); the scores are its `evaluation` output. It evaluates
again only when what it measures changes (a new endpoint, new evaluation data, another base model); a changed
`minChrf` re-checks the recorded scores without calling any model. Nothing exists in the cloud for it, so
delete does nothing.
"""

from __future__ import annotations

from typing import Any, Optional, TypedDict

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

from resources.dataset import checked_file
from resources.target import TargetedProvider, is_unknown

# What is measured: a change means a new evaluation.
MEASURED_INPUTS = ("endpoint", "baseModel", "datasetSha256")
# How it is judged or run: a change is an in-place update.
JUDGING_INPUTS = ("minChrf", "concurrency", "datasetPath")


class TranslationEvaluationArgs(TypedDict):
    """Inputs of a TranslationEvaluation."""

    endpoint: pulumi.Input[str]
    """Tuned endpoint (`projects/P/locations/L/endpoints/E`); empty while the job has not succeeded."""
    baseModel: pulumi.Input[str]
    """Base model the tuned one is compared with (translation-llm-002)."""
    datasetPath: pulumi.Input[str]
    """Absolute path of the evaluation JSONL (the validation set unless the stack names another)."""
    minChrf: pulumi.Input[float]
    """Lowest tuned chrF that passes (0 = no gate)."""
    concurrency: pulumi.Input[int]
    """generateContent requests in flight at most."""


class TranslationEvaluationProvider(TargetedProvider, ResourceProvider):
    """check fingerprints the evaluation file; create evaluates; update re-checks the gate."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures = []
        min_chrf = news.get("minChrf", 0)
        if not isinstance(min_chrf, (int, float)) or not 0 <= min_chrf <= 100:
            failures.append(CheckFailure("minChrf", f"must be a number from 0 (no gate) to 100, got {min_chrf!r}"))
        concurrency = news.get("concurrency", 8)
        if not isinstance(concurrency, (int, float)) or not 1 <= concurrency <= 64:
            failures.append(CheckFailure("concurrency", f"must be from 1 to 64, got {concurrency!r}"))
        path = news.get("datasetPath")
        if failures or is_unknown(path):
            return CheckResult(news, failures)
        report, failures = checked_file("datasetPath", path, "validation")
        if report is None:
            return CheckResult(news, failures)
        return CheckResult({**news, "datasetSha256": report.sha256}, [])

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in MEASURED_INPUTS if olds.get(key) != news.get(key)]
        updates = [key for key in JUDGING_INPUTS if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(replaces or updates), replaces=replaces,
                          stables=["evaluation"] if not replaces else [], delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        from tuning.evaluation import check_gate, evaluate, load_examples

        endpoint = props.get("endpoint")
        if not endpoint:
            # The job has not succeeded yet (a stack that does not wait): the next up, after the job has ended
            # and a refresh has recorded its endpoint, evaluates.
            pulumi.log.info("no tuned endpoint yet: the evaluation runs on the first `up` after the job succeeds")
            return CreateResult("pending", {**props, "evaluation": None})
        examples = load_examples(props["datasetPath"])
        pulumi.log.info(f"evaluating {endpoint} against {props['baseModel']} on {len(examples)} examples")
        evaluation = evaluate(self.target, endpoint=endpoint, base_model=props["baseModel"], examples=examples,
                              concurrency=int(props.get("concurrency") or 8))
        pulumi.log.info(f"evaluation: tuned chrF {evaluation['tuned']['chrf']}, BLEU {evaluation['tuned']['bleu']}; "
                        f"base chrF {evaluation['base']['chrf']}, BLEU {evaluation['base']['bleu']}")
        check_gate(evaluation, float(props.get("minChrf") or 0))
        return CreateResult(f"{endpoint}@{props['datasetSha256'][:16]}", {**props, "evaluation": evaluation})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)  # nothing in the cloud to compare with: the recorded scores stand

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        from tuning.evaluation import check_gate

        if olds.get("evaluation"):
            check_gate(olds["evaluation"], float(news.get("minChrf") or 0))
        return UpdateResult({**olds, **{key: news.get(key) for key in JUDGING_INPUTS}})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        return None  # scores only: nothing to remove


class TranslationEvaluation(Resource, module="vertex", name="TranslationEvaluation"):
    """BLEU and chrF of the tuned endpoint and of the base model on an evaluation set; fails below `minChrf`."""

    evaluation: pulumi.Output[Optional[dict]]

    def __init__(self, name: str, args: TranslationEvaluationArgs,
                 opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(TranslationEvaluationProvider(), name, {**args, "datasetSha256": None, "evaluation": None},
                         opts)

"""TuningDataset: a local JSONL file, validated, uploaded to a content-addressed GCS object."""

from __future__ import annotations

import secrets
from pathlib import Path
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

from resources.target import TargetedProvider, is_unknown
from tuning.dataset import DatasetKind, DatasetReport, estimate_tokens, validate_file

# Inputs whose change means a different object: replace. `path` is not one: moving the file is not new data.
_REPLACE_ON = ("bucket", "prefix", "kind", "sha256")
_OUTPUTS = ("uri", "objectName", "sha256", "exampleCount", "bytes", "estimatedTokens")
# Facts about the file that `check` computes, so that they are known during preview.
_FACTS = ("sha256", "exampleCount", "bytes", "estimatedTokens")


def _facts(report: DatasetReport) -> dict[str, Any]:
    return {"sha256": report.sha256, "exampleCount": report.example_count, "bytes": report.bytes,
            "estimatedTokens": estimate_tokens(report.total_characters)}


def _missing_facts(props: dict[str, Any]) -> dict[str, Any]:
    """The facts a dataset recorded before they existed lacks (`estimatedTokens`), from its file if the file
    still holds the uploaded content; none otherwise."""
    if all(props.get(key) is not None for key in _FACTS):
        return {}
    report = validate_file(props["path"], kind=props["kind"])
    if report.sha256 != props.get("sha256"):  # changed or gone: the next up replaces the dataset anyway
        return {}
    return {key: value for key, value in _facts(report).items() if props.get(key) is None}


def checked_file(prop: str, path: Any, kind: DatasetKind) -> tuple[Optional[DatasetReport], list[CheckFailure]]:
    """The dataset rules on the file named by input `prop` during a provider's check: (its report, no failures),
    or (None, one CheckFailure per listed problem, on `prop`) when it is not a path or breaks a rule."""
    if not isinstance(path, str):
        return None, [CheckFailure(prop, f"must be a file path, got {path!r}")]
    report = validate_file(path, kind=kind)
    if not report.ok:
        return None, [CheckFailure(prop, str(problem)) for problem in report.problems[:20]]
    return report, []


class TuningDatasetArgs(TypedDict):
    """Inputs of a TuningDataset."""

    path: pulumi.Input[str]
    """Absolute path of the local JSONL file."""
    kind: pulumi.Input[str]
    """`training` or `validation` (the limits differ)."""
    bucket: pulumi.Input[str]
    """Bucket to upload to."""
    prefix: pulumi.Input[str]
    """Object name prefix; the object is `{prefix}/{kind}/{sha256}/{file name}`."""


class TuningDatasetProvider(TargetedProvider, ResourceProvider):
    """check validates the file (and fingerprints it); create uploads; delete removes the object."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        path, kind = news.get("path"), news.get("kind")
        if kind not in ("training", "validation"):
            return CheckResult(news, [CheckFailure("kind", f"must be 'training' or 'validation', got {kind!r}")])
        if is_unknown(path):
            return CheckResult(news, [])
        report, failures = checked_file("path", path, kind)
        if report is None:
            return CheckResult(news, failures)
        for warning in report.warnings:
            pulumi.log.warn(f"{path}: {warning}")
        return CheckResult({**news, **_facts(report)}, [])

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in _REPLACE_ON if olds.get(key) != news.get(key)]
        # A fact the state lacks (a dataset created before the fact existed) is no change: an update would leave
        # `uri` unknown during preview, and so show the job as replaced. `pulumi refresh` records it (read).
        changes = bool(replaces) or olds.get("path") != news.get("path")
        # A moved file with the same content is an in-place update: the outputs stay as they are,
        # so preview does not show the job that uses `uri` as replaced.
        stables = [] if replaces else list(_OUTPUTS)
        return DiffResult(changes=changes, replaces=replaces, stables=stables, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        from tuning.storage import dataset_object_name

        name = dataset_object_name(props["prefix"], props["kind"], props["sha256"], secrets.token_hex(4),
                                   props["path"])
        self.storage_api().upload_file(props["bucket"], name, Path(props["path"]))
        uri = f"gs://{props['bucket']}/{name}"
        return CreateResult(uri, {**props, "objectName": name, "uri": uri})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.storage_api().object_exists(props["bucket"], props["objectName"]):
            return ReadResult("", {})
        return ReadResult(id_, {**props, **_missing_facts(props)})

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, "path": news["path"]})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self.storage_api().delete_object(props["bucket"], props["objectName"])


class TuningDataset(Resource, module="storage", name="TuningDataset"):
    """A validated dataset object; outputs `uri`, `sha256`, `exampleCount`, `bytes`, `estimatedTokens`."""

    uri: pulumi.Output[str]
    sha256: pulumi.Output[str]
    exampleCount: pulumi.Output[int]  # noqa: N815 (output names are the wire names)
    bytes: pulumi.Output[int]
    estimatedTokens: pulumi.Output[int]  # noqa: N815
    """Estimated tokens of the whole file (characters / 4, as the per-example limit is estimated)."""

    def __init__(self, name: str, args: TuningDatasetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(TuningDatasetProvider(), name,
                         {**args, **{key: None for key in _OUTPUTS}}, opts)

    def facts(self) -> dict[str, pulumi.Output[Any]]:
        """The dataset as the stack exports it. A dict of outputs, not one output: `examples`,
        `estimatedTokens`, `bytes` and `sha256` are known during preview, `uri` only after the upload."""
        return {"uri": self.uri, "examples": self.exampleCount, "estimatedTokens": self.estimatedTokens,
                "bytes": self.bytes, "sha256": self.sha256}

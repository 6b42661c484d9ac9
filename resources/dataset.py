"""TuningDataset: a local JSONL file, validated, uploaded to a content-addressed GCS object."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Optional, TypedDict

import pulumi
from pulumi.dynamic import CheckFailure, CheckResult, CreateResult, DiffResult, ReadResult, Resource, \
    ResourceProvider, UpdateResult

from resources.target import TargetedProvider, is_unknown
from tuning.dataset import validate_file
from tuning.storage import StorageApi, dataset_object_name

# Inputs whose change means a different object: replace. `path` is not one: moving the file is not new data.
_REPLACE_ON = ("bucket", "prefix", "kind", "sha256")
_OUTPUTS = ("uri", "objectName", "sha256", "exampleCount", "bytes")


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
        report = validate_file(path, kind=kind)
        if not report.ok:
            return CheckResult(news, [CheckFailure("path", str(problem)) for problem in report.problems[:20]])
        for warning in report.warnings:
            pulumi.log.warn(f"{path}: {warning}")
        return CheckResult({**news, "sha256": report.sha256, "exampleCount": report.example_count,
                            "bytes": report.bytes}, [])

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in _REPLACE_ON if olds.get(key) != news.get(key)]
        changes = bool(replaces) or olds.get("path") != news.get("path")
        # A moved file with the same content is an in-place update: the outputs stay as they are,
        # so preview does not show the job that uses `uri` as replaced.
        stables = [] if replaces else list(_OUTPUTS)
        return DiffResult(changes=changes, replaces=replaces, stables=stables, delete_before_replace=False)

    def create(self, props: dict[str, Any]) -> CreateResult:
        name = dataset_object_name(props["prefix"], props["kind"], props["sha256"], secrets.token_hex(4),
                                   props["path"])
        StorageApi(self.target).upload_file(props["bucket"], name, Path(props["path"]))
        uri = f"gs://{props['bucket']}/{name}"
        return CreateResult(uri, {**props, "objectName": name, "uri": uri})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not StorageApi(self.target).object_exists(props["bucket"], props["objectName"]):
            return ReadResult("", {})
        return ReadResult(id_, props)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult({**olds, "path": news["path"]})

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        StorageApi(self.target).delete_object(props["bucket"], props["objectName"])


class TuningDataset(Resource, module="storage", name="TuningDataset"):
    """A validated dataset object; outputs `uri`, `sha256`, `exampleCount`, `bytes`."""

    uri: pulumi.Output[str]
    sha256: pulumi.Output[str]
    exampleCount: pulumi.Output[int]  # noqa: N815 (output names are the wire names)
    bytes: pulumi.Output[int]

    def __init__(self, name: str, args: TuningDatasetArgs, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(TuningDatasetProvider(), name,
                         {**args, "uri": None, "sha256": None, "exampleCount": None, "bytes": None,
                          "objectName": None}, opts)

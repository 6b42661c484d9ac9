"""The dataset bucket: `pulumi_gcp.storage.Bucket` on GCP, an emulator bucket on the local stack.

This is the one place where the local and real stacks differ in code: the pulumi-gcp resource
plugin cannot be obtained offline, so the local stack serves the same role through a dynamic
resource that talks to the emulator with google-cloud-storage.

On GCP the tuning job runs as the Vertex AI Secure Fine-Tuning Service Agent (unless the job names
another service account), which reads the datasets, so it gets `roles/storage.objectViewer` on the
bucket. Google creates that agent with the project's first tuning job; in a project that has never
tuned, create it first (see the README) or the grant fails with "principal does not exist".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from resources.target import TargetedProvider

if TYPE_CHECKING:
    from resources.settings import StackSettings


TUNING_SERVICE_AGENT = "service-{project_number}@gcp-sa-vertex-tune.iam.gserviceaccount.com"


class EmulatorBucketProvider(TargetedProvider, ResourceProvider):
    """A bucket on the emulator; like the GCP bucket, destroy refuses to delete objects it did not upload."""

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        replaces = [key for key in ("name", "location") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(replaces) or olds.get("labels") != news.get("labels"), replaces=replaces,
                          delete_before_replace=True)

    def create(self, props: dict[str, Any]) -> CreateResult:
        self.storage_api().ensure_bucket(props["name"], location=props["location"], labels=props.get("labels"))
        return CreateResult(props["name"], props)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        if not self.storage_api().bucket_exists(id_):
            return ReadResult("", {})
        return ReadResult(id_, props)

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        self.storage_api().set_bucket_labels(id_, news.get("labels") or {})
        return UpdateResult(news)

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        self.storage_api().delete_bucket(id_)


class EmulatorBucket(Resource, module="storage", name="EmulatorBucket"):
    """A GCS bucket on the local emulator."""

    def __init__(self, name: str, props: dict[str, Any], opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__(EmulatorBucketProvider(), name, props, opts)


@dataclass(frozen=True)
class TuningBucket:
    """The bucket's name, and the resources the tuning job must wait for (the service agent's read access)."""

    name: pulumi.Output[str]
    access: list[pulumi.Resource]


def tuning_bucket(resource_name: str, bucket_name: str, settings: "StackSettings",
                  opts: pulumi.ResourceOptions) -> TuningBucket:
    """Declare the dataset bucket for this stack, and on GCP the tuning service agent's read access."""
    labels = {**settings.labels, "managed-by": "pulumi"}
    if settings.uses_emulator:
        emulator_bucket = EmulatorBucket(resource_name, {"name": bucket_name, "location": settings.region.upper(),
                                                         "labels": labels}, opts)
        return TuningBucket(name=emulator_bucket.id, access=[])
    import pulumi_gcp as gcp

    bucket = gcp.storage.Bucket(resource_name, name=bucket_name, location=settings.region.upper(),
                                uniform_bucket_level_access=True, labels=labels, force_destroy=False, opts=opts)
    project = gcp.organizations.get_project(project_id=settings.project)
    access = gcp.storage.BucketIAMMember(
        f"{resource_name}-tuning-agent-read", bucket=bucket.name, role="roles/storage.objectViewer",
        member=f"serviceAccount:{TUNING_SERVICE_AGENT.format(project_number=project.number)}",
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[bucket])))
    return TuningBucket(name=bucket.name, access=[access])

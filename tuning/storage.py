"""Thin adapter over google-cloud-storage: buckets and content-addressed dataset objects."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from tuning.client import ApiTarget, RetryPolicy, is_retryable
from tuning.errors import ApiError

# Files above this size are sent as resumable uploads in chunks of this size.
CHUNK_BYTES = 8 * 1024 * 1024


def dataset_object_name(prefix: str, kind: str, sha256: str, instance: str, filename: str) -> str:
    """`{prefix}/{kind}/{sha256}/{instance}/{filename}`.

    The name carries the content hash, so new data means a new object (and a new job). `instance` is
    unique per resource instance, so two instances never share an object: when a replacement uploads
    the same content again, deleting the replaced instance cannot delete the object still in use.
    """
    return f"{prefix.strip('/')}/{kind}/{sha256}/{instance}/{Path(filename).name}".lstrip("/")


class StorageApi:
    """Bucket and object calls against GCS or the emulator."""

    def __init__(self, target: ApiTarget, retry_policy: RetryPolicy = RetryPolicy()) -> None:
        self.target = target
        self._retry = retry_policy.retry()
        if target.emulator_endpoint:
            self._client = storage.Client(project=target.project, credentials=AnonymousCredentials(),
                                          client_options={"api_endpoint": target.emulator_endpoint})
        else:
            self._client = storage.Client(project=target.project)

    def ensure_bucket(self, name: str, *, location: str, labels: Optional[dict[str, str]] = None) -> None:
        """Create the bucket with uniform access in `location` unless it exists."""
        try:
            self._client.get_bucket(name, retry=self._retry)
            return
        except gexc.NotFound:
            pass
        bucket = self._client.bucket(name)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.labels = labels or {}
        try:
            self._client.create_bucket(bucket, location=location, retry=self._retry)
        except gexc.Conflict:
            pass  # created concurrently: fine
        except gexc.GoogleAPICallError as error:
            raise ApiError(error.code or 0, f"creating bucket {name}: {error.message}") from error

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket; a missing bucket is fine.

        Raises:
            ApiError: the bucket still holds objects. They are not ours to delete (the stack's own
                dataset objects are deleted before the bucket), so nothing is lost by surprise.
        """
        try:
            self._client.bucket(name).delete(retry=self._retry)
        except gexc.NotFound:
            pass
        except gexc.Conflict as error:
            left = [blob.name for blob in self._client.list_blobs(name, max_results=5, retry=self._retry)]
            raise ApiError(409, f"bucket {name} is not empty ({', '.join(left)}, ...): it holds objects this stack "
                                "did not upload; move or delete them, then run destroy again") from error

    def set_bucket_labels(self, name: str, labels: dict[str, str]) -> None:
        bucket = self._client.get_bucket(name, retry=self._retry)
        bucket.labels = labels
        bucket.patch(retry=self._retry)

    def bucket_labels(self, name: str) -> dict[str, str]:
        return dict(self._client.get_bucket(name, retry=self._retry).labels)

    def bucket_exists(self, name: str) -> bool:
        try:
            self._client.get_bucket(name, retry=self._retry)
            return True
        except gexc.NotFound:
            return False

    def object_exists(self, bucket: str, name: str) -> bool:
        return self._client.bucket(bucket).blob(name).exists(retry=self._retry)

    def upload_file(self, bucket: str, name: str, path: Path) -> None:
        """Upload `path` as `name`, resumable in chunks when large; an existing object is kept (create-only)."""
        blob = self._client.bucket(bucket).blob(name, chunk_size=CHUNK_BYTES if path.stat().st_size > CHUNK_BYTES
                                                else None)
        try:
            blob.upload_from_filename(str(path), content_type="application/jsonl", if_generation_match=0,
                                      retry=self._retry)
        except gexc.PreconditionFailed:
            pass  # same content-addressed name: the object already holds these bytes
        except gexc.GoogleAPICallError as error:
            if is_retryable(error):
                raise
            raise ApiError(error.code or 0, f"uploading gs://{bucket}/{name}: {error.message}") from error

    def delete_object(self, bucket: str, name: str) -> None:
        try:
            self._client.bucket(bucket).blob(name).delete(retry=self._retry)
        except gexc.NotFound:
            pass

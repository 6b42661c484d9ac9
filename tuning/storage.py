"""Thin adapter over google-cloud-storage: buckets and content-addressed dataset objects.

Retries are google-cloud-storage's own (`DEFAULT_RETRY`: 408, 429, 5xx and connection errors), with the deadline
and backoff of the project's `RetryPolicy`, and only where repeating the request is safe:
* reads (buckets.get, objects.get, objects.list): always;
* objects.insert (multipart, or resumable in chunks for large files): conditional on `ifGenerationMatch=0`
  (`ConditionalRetryPolicy`, as the library does for generation-conditioned writes). A retry after a lost answer
  gets 412: the object is there, and as its name carries the content hash and a per-instance segment, it holds
  these bytes;
* buckets.insert: a retry after a lost answer gets 409, and the bucket is then read to tell ours from a name
  that belongs to another project;
* buckets.delete and objects.delete: a retry after a lost answer gets 404, which means gone (the stack's object
  names are unique to the resource instance, so nobody else writes them);
* buckets.patch (labels): the patch sets the whole label map, so sending it twice gives the same bucket.
A call that fails for good raises `ApiCallError`, one line naming the call, the resource and what to do.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Optional

from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.storage import Client
from google.cloud.storage.retry import DEFAULT_RETRY, ConditionalRetryPolicy, is_generation_specified

from tuning.client import CLOUD_STORAGE, ApiTarget, RetryPolicy, calling, missing_credentials
from tuning.errors import ApiCallError, ApiError

# Files above this size are sent as resumable uploads in chunks of this size (google-cloud-storage sends files
# of up to 8 MiB as one multipart request).
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

    def __init__(self, target: ApiTarget, retry_policy: Optional[RetryPolicy] = None) -> None:
        self.target = target
        self.retry_policy = retry_policy or RetryPolicy.from_environment()
        backoff = self.retry_policy.backoff
        # The library's predicate, with our deadline and backoff.
        self._retry = DEFAULT_RETRY.with_timeout(self.retry_policy.deadline).with_delay(
            initial=backoff.initial, maximum=backoff.maximum, multiplier=backoff.multiplier)
        # Retried only when the request carries a generation precondition (the library's own rule for writes).
        self._retry_if_generation = ConditionalRetryPolicy(self._retry, is_generation_specified, ["query_params"])
        self._timeout = self.retry_policy.attempt_timeout
        try:
            if target.emulator_endpoint:
                self._client = Client(project=target.project, credentials=AnonymousCredentials(),
                                              client_options={"api_endpoint": target.emulator_endpoint})
            else:
                self._client = Client(project=target.project)
        except auth_exceptions.DefaultCredentialsError as error:
            raise missing_credentials("Cloud Storage client", f"for project {target.project}") from error

    def _calling(self, call: str, resource: str) -> AbstractContextManager[None]:
        return calling(call, resource, self.target, self.retry_policy, CLOUD_STORAGE)

    def ensure_bucket(self, name: str, *, location: str, labels: Optional[dict[str, str]] = None) -> None:
        """Create the bucket with uniform access in `location` unless it exists."""
        if self.bucket_exists(name):
            return
        bucket = self._client.bucket(name)
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.labels = labels or {}
        with self._calling("buckets.insert", f"gs://{name}"):
            try:
                self._client.create_bucket(bucket, location=location, retry=self._retry, timeout=self._timeout)
            except gexc.Conflict as conflict:
                # Ours: created by an attempt whose answer was lost, or concurrently. Not ours: the name is taken.
                try:
                    self._client.get_bucket(name, retry=self._retry, timeout=self._timeout)
                except gexc.Forbidden:
                    raise ApiCallError(call=f"{CLOUD_STORAGE.name} buckets.insert", resource=f"gs://{name}",
                                       kind="rejected", code=409,
                                       problem="the name is taken by a bucket of another project (409 Conflict)",
                                       advice="choose another name: pulumi config set translation-tuning:bucketName "
                                              "NAME") from conflict

    def delete_bucket(self, name: str) -> None:
        """Delete an empty bucket; a missing bucket is fine.

        Raises:
            ApiError: the bucket still holds objects (409 FAILED_PRECONDITION). They are not ours to delete (the
                stack's own dataset objects are deleted before the bucket), so nothing is lost by surprise.
        """
        with self._calling("buckets.delete", f"gs://{name}"):
            try:
                self._client.bucket(name).delete(retry=self._retry, timeout=self._timeout)
                return
            except gexc.NotFound:
                return
            except gexc.Conflict as error:
                conflict = error
        with self._calling("objects.list", f"gs://{name}"):
            left = [blob.name for blob in self._client.list_blobs(name, max_results=5, retry=self._retry,
                                                                  timeout=self._timeout)]
        # Cloud Storage's JSON API answers 409 and names no google.rpc status: not being empty is a failed precondition.
        raise ApiError(409, "FAILED_PRECONDITION",
                       f"bucket {name} is not empty ({', '.join(left)}, ...): it holds objects this stack did not "
                       "upload; move or delete them, then run destroy again") from conflict

    def set_bucket_labels(self, name: str, labels: dict[str, str]) -> None:
        with self._calling("buckets.patch", f"gs://{name}"):
            bucket = self._client.get_bucket(name, retry=self._retry, timeout=self._timeout)
            bucket.labels = labels
            bucket.patch(retry=self._retry, timeout=self._timeout)

    def bucket_labels(self, name: str) -> dict[str, str]:
        with self._calling("buckets.get", f"gs://{name}"):
            return dict(self._client.get_bucket(name, retry=self._retry, timeout=self._timeout).labels)

    def bucket_exists(self, name: str) -> bool:
        with self._calling("buckets.get", f"gs://{name}"):
            try:
                self._client.get_bucket(name, retry=self._retry, timeout=self._timeout)
                return True
            except gexc.NotFound:
                return False

    def object_exists(self, bucket: str, name: str) -> bool:
        with self._calling("objects.get", f"gs://{bucket}/{name}"):
            exists: bool = self._client.bucket(bucket).blob(name).exists(retry=self._retry, timeout=self._timeout)
            return exists

    def upload_file(self, bucket: str, name: str, path: Path) -> None:
        """Upload `path` as `name`, resumable in chunks when large; an existing object is kept (create-only)."""
        resumable = path.stat().st_size > CHUNK_BYTES
        blob = self._client.bucket(bucket).blob(name, chunk_size=CHUNK_BYTES if resumable else None)
        call = f"objects.insert ({'resumable' if resumable else 'multipart'} upload)"
        with self._calling(call, f"gs://{bucket}/{name}"):
            try:
                blob.upload_from_filename(str(path), content_type="application/jsonl", if_generation_match=0,
                                          retry=self._retry_if_generation, timeout=self._timeout)
            except gexc.PreconditionFailed:
                pass  # same content-addressed name: the object already holds these bytes

    def delete_object(self, bucket: str, name: str) -> None:
        with self._calling("objects.delete", f"gs://{bucket}/{name}"):
            try:
                self._client.bucket(bucket).blob(name).delete(retry=self._retry, timeout=self._timeout)
            except gexc.NotFound:
                pass

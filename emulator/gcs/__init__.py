"""The Cloud Storage JSON API subset that google-cloud-storage uses, with metadata in SQLite and bytes on disk."""

from emulator.gcs.api import gcs_routes
from emulator.gcs.errors import PreconditionFailed
from emulator.gcs.store import SCHEMA, ObjectStore

__all__ = ["SCHEMA", "ObjectStore", "PreconditionFailed", "gcs_routes"]

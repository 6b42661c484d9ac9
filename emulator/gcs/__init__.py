"""The Cloud Storage JSON API subset that google-cloud-storage uses, with metadata in SQLite and bytes on disk."""

from emulator.gcs.api import gcs_routes
from emulator.gcs.store import ObjectStore

__all__ = ["ObjectStore", "gcs_routes"]

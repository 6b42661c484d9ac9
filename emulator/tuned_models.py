"""Tuned models, their endpoints and the long-running operations that clean them up, in SQLite.

A succeeded job's model is deployed on an endpoint of its own (`DeployedModel` id = the model id); undeploying,
deleting the endpoint and deleting the model are stamps in `tuned_model_lifecycle`, and each answers an operation
that is already done.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import astuple, dataclass, replace
from typing import Any, Optional

from emulator.clock import now_rfc3339
from emulator.db import Database
from emulator.errors import FailedPrecondition, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS tuned_models (id TEXT PRIMARY KEY, project TEXT NOT NULL, location TEXT NOT NULL,
    job_id TEXT NOT NULL, endpoint_id TEXT NOT NULL UNIQUE, display_name TEXT NOT NULL, model_dir TEXT NOT NULL,
    create_time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tuned_model_lifecycle (id TEXT PRIMARY KEY, undeploy_time TEXT, endpoint_delete_time TEXT,
    model_delete_time TEXT);
CREATE TABLE IF NOT EXISTS operations (name TEXT PRIMARY KEY, body TEXT NOT NULL);
"""
# `tuned_model_lifecycle` (one row per tuned model once any of it is cleaned up) and `operations` are tables of
# their own rather than columns of `tuned_models`, so a data dir written before they existed gains them through
# `CREATE TABLE IF NOT EXISTS` alone: no migration.

_TUNED_MODELS = ("SELECT m.*, l.undeploy_time, l.endpoint_delete_time, l.model_delete_time FROM tuned_models m "
                 "LEFT JOIN tuned_model_lifecycle l ON l.id = m.id")


def new_numeric_id() -> str:
    # Production ids are 19-digit numbers; keep the shape so names look and sort like the real ones.
    return str(10**18 + secrets.randbelow(9 * 10**18))


@dataclass(frozen=True)
class TunedModelRecord:
    id: str
    project: str
    location: str
    job_id: str
    endpoint_id: str
    display_name: str
    model_dir: str
    create_time: str
    undeploy_time: Optional[str] = None
    endpoint_delete_time: Optional[str] = None
    model_delete_time: Optional[str] = None

    @property
    def deployed(self) -> bool:
        """Whether the model is still deployed on its endpoint (DeployedModel id = the model id)."""
        return self.undeploy_time is None

    @property
    def model(self) -> str:
        """The Model resource name (without its version)."""
        return f"projects/{self.project}/locations/{self.location}/models/{self.id}"

    @property
    def model_name(self) -> str:
        """The name of the model's one version, as `TuningJob.tunedModel.model` gives it."""
        return f"{self.model}@1"

    @property
    def endpoint_name(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/endpoints/{self.endpoint_id}"


class TunedModels:
    """The tuned models and endpoints of every job, and the operations on them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)

    def of_job(self, job_id: str) -> list[TunedModelRecord]:
        """The tuned models a job produced (none, or one for a SUCCEEDED job)."""
        return [TunedModelRecord(**dict(row))
                for row in self.db.query(f"{_TUNED_MODELS} WHERE m.job_id = ?", (job_id,))]

    def insert(self, project: str, location: str, job_id: str, display_name: str,
                           model_dir: str) -> TunedModelRecord:
        with self.db.transaction() as conn:
            return insert_tuned_model(conn, project, location, job_id, display_name, model_dir)

    def model(self, project: str, location: str, model_id: str) -> TunedModelRecord:
        """The tuned model `model_id`, which may name its one version (`@1`, `@default`); NotFound once deleted."""
        return _live(self.db.connection(), project, location, "Model", model_id)

    def by_endpoint(self, project: str, location: str, endpoint_id: str) -> TunedModelRecord:
        """The tuned model whose endpoint is `endpoint_id` (deployed or not); NotFound once the endpoint is deleted."""
        return _live(self.db.connection(), project, location, "Endpoint", endpoint_id)

    def undeploy_model(self, project: str, location: str, endpoint_id: str,
                       deployed_model_id: str) -> TunedModelRecord:
        """endpoints.undeployModel: the model stops serving on its endpoint; both stay (and cost nothing more).
        NotFound for no such endpoint, or when `deployed_model_id` is not deployed on it (any more)."""
        with self.db.transaction() as conn:
            record = _live(conn, project, location, "Endpoint", endpoint_id)
            if not record.deployed or deployed_model_id != record.id:
                raise NotFound(f"DeployedModel {deployed_model_id} not found on Endpoint {record.endpoint_name}.")
            return _stamp(conn, record, "undeploy_time")

    def delete_endpoint(self, project: str, location: str, endpoint_id: str) -> TunedModelRecord:
        """endpoints.delete: NotFound for no such endpoint (or a deleted one); FailedPrecondition while the model is
        deployed on it, as Vertex AI refuses to delete an endpoint that still has a deployed model."""
        with self.db.transaction() as conn:
            record = _live(conn, project, location, "Endpoint", endpoint_id)
            if record.deployed:
                raise FailedPrecondition(
                    f"Endpoint {record.endpoint_name} has deployed models (DeployedModel {record.id}). Undeploy "
                    "all of them before deleting the Endpoint.")
            return _stamp(conn, record, "endpoint_delete_time")

    def delete_model(self, project: str, location: str, model_id: str) -> TunedModelRecord:
        """models.delete (`model_id` may carry `@1`): NotFound for no such model (or a deleted one);
        FailedPrecondition while it is deployed on its endpoint, as on Vertex AI."""
        with self.db.transaction() as conn:
            record = _live(conn, project, location, "Model", model_id)
            if record.deployed:
                raise FailedPrecondition(
                    f"The Model {record.model} is deployed or being deployed at the following "
                    f"Endpoint(s): {record.endpoint_name}. Undeploy the model from them before deleting it.")
            return _stamp(conn, record, "model_delete_time")

    def insert_operation(self, parent: str, body: dict[str, Any]) -> dict[str, Any]:
        """Store an operation of the resource `parent` under a new id; returns it with its `name`."""
        operation = {"name": f"{parent}/operations/{new_numeric_id()}", **body}
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO operations (name, body) VALUES (?, ?)",
                         (operation["name"], json.dumps(operation)))
        return operation

    def operation(self, name: str) -> dict[str, Any]:
        row = self.db.query_one("SELECT body FROM operations WHERE name = ?", (name,))
        if row is None:
            raise NotFound(f"Operation {name} not found.")
        return json.loads(row["body"])

    def reset(self) -> None:
        with self.db.transaction() as conn:
            for table in ("tuned_models", "tuned_model_lifecycle", "operations"):
                conn.execute(f"DELETE FROM {table}")


def insert_tuned_model(conn: Any, project: str, location: str, job_id: str, display_name: str,
                        model_dir: str) -> TunedModelRecord:
    record = TunedModelRecord(id=new_numeric_id(), project=project, location=location, job_id=job_id,
                              endpoint_id=new_numeric_id(), display_name=display_name, model_dir=model_dir,
                              create_time=now_rfc3339())
    stored = astuple(record)[:8]  # the columns of `tuned_models`: the fields before the lifecycle stamps
    conn.execute(f"INSERT INTO tuned_models VALUES ({','.join('?' * len(stored))})", stored)
    return record


def _live(conn: Any, project: str, location: str, kind: str, resource_id: str) -> TunedModelRecord:
    """The tuned model whose `kind` (Model, Endpoint) is `resource_id`, unless that one is deleted; else NotFound.
    A model id may name its one version (`@1`) or its alias (`@default`)."""
    column, value = "endpoint_id", resource_id
    if kind == "Model":
        base, _, version = resource_id.partition("@")
        column, value = "id", base if version in ("", "1", "default") else ""
    row = conn.execute(f"{_TUNED_MODELS} WHERE m.{column} = ? AND m.project = ? AND m.location = ?",
                       (value, project, location)).fetchone()
    if row is None or row[f"{kind.lower()}_delete_time"] is not None:
        raise NotFound(f"{kind} projects/{project}/locations/{location}/{kind.lower()}s/{resource_id} not found.")
    return TunedModelRecord(**dict(row))


def _stamp(conn: Any, record: TunedModelRecord, column: str) -> TunedModelRecord:
    """Stamp one lifecycle column of a tuned model with the current time; returns the record so stamped."""
    now = now_rfc3339()
    conn.execute(f"INSERT INTO tuned_model_lifecycle (id, {column}) VALUES (?, ?) "
                 f"ON CONFLICT(id) DO UPDATE SET {column} = excluded.{column}", (record.id, now))
    return replace(record, **{column: now})

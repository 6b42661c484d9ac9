"""Tuning jobs and their metric points, in SQLite; a job that succeeds gets its tuned model in the same write."""

from __future__ import annotations

import json
from itertools import islice
from typing import Any, Iterable, Optional

from emulator.clock import now_rfc3339
from emulator.db import Database
from emulator.errors import Cancelled, FailedPrecondition, InvalidArgument, NotFound
from emulator.jobs import ENDED_STATES, JobState, job_error, job_resource_name, state_of
from emulator.tuned_models import SCHEMA as TUNED_MODELS_SCHEMA
from emulator.tuned_models import insert_tuned_model, new_numeric_id

SCHEMA = """
CREATE TABLE IF NOT EXISTS tuning_jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
    project TEXT NOT NULL, location TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS metric_points (job_id TEXT NOT NULL, step INTEGER NOT NULL, metric TEXT NOT NULL,
    value REAL NOT NULL, time TEXT NOT NULL, PRIMARY KEY (job_id, step, metric));
"""


class JobStore:
    """Tuning jobs and their metric points; the runner moves jobs through their states by calling `update_job`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.ensure_schema(SCHEMA)
        db.ensure_schema(TUNED_MODELS_SCHEMA)  # a job that succeeds inserts its tuned model

    def check_health(self) -> None:
        """Raises if the database cannot answer."""
        self.db.query_one("SELECT 1")

    # --- jobs -------------------------------------------------------------------------------------

    def insert_job(self, project: str, location: str, body: dict[str, Any]) -> dict[str, Any]:
        job_id = new_numeric_id()
        now = now_rfc3339()
        body = {**body, "name": job_resource_name(project, location, job_id),
                "state": JobState.JOB_STATE_PENDING.name, "createTime": now, "updateTime": now}
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO tuning_jobs (id, project, location, state, body) VALUES (?, ?, ?, ?, ?)",
                         (job_id, project, location, body["state"], json.dumps(body)))
        return body

    def job(self, project: str, location: str, job_id: str) -> dict[str, Any]:
        row = self.db.query_one("SELECT body FROM tuning_jobs WHERE id = ? AND project = ? AND location = ?",
                                (job_id, project, location))
        if row is None:
            raise NotFound(f"TuningJob {job_resource_name(project, location, job_id)} not found.")
        return json.loads(row["body"])

    def job_by_id(self, job_id: str) -> dict[str, Any]:
        return json.loads(_job_row(self.db.connection(), job_id)["body"])

    def update_job(self, job_id: str, *, only_if_state_in: Optional[Iterable[JobState]] = None,
                   **fields: Any) -> Optional[dict[str, Any]]:
        """Merge camelCase `fields` into the job (None removes a field); returns the new body.

        With `only_if_state_in`, the update happens only while the job is in one of those states
        (returns None otherwise), so a cancel and the runner's own transitions cannot overwrite each other.
        """
        with self.db.transaction() as conn:
            body = json.loads(_job_row(conn, job_id)["body"])
            if only_if_state_in is not None and state_of(body) not in set(only_if_state_in):
                return None
            _write_job(conn, job_id, body, fields)
        return body

    def list_jobs(self, project: str, location: str, *, page_size: int, after: Optional[int],
                  matches) -> tuple[list[dict[str, Any]], Optional[int]]:
        """Newest first, like the service: the jobs listed after the one numbered `after` (its `seq`) that
        `matches(body)`, at most `page_size`; and the last one's number when more remain."""
        if after is not None and (not isinstance(after, int) or isinstance(after, bool) or not 0 < after < 2**62):
            raise InvalidArgument(f"Invalid page token for seq {after!r}.")
        rows = self.db.connection().execute(
            "SELECT seq, body FROM tuning_jobs WHERE project = ? AND location = ? AND seq < ? ORDER BY seq DESC",
            (project, location, after or 2**62))
        jobs = ((row["seq"], json.loads(row["body"])) for row in rows)
        page = list(islice(((seq, body) for seq, body in jobs if matches(body)), page_size + 1))
        return [body for _seq, body in page[:page_size]], (page[page_size - 1][0] if len(page) > page_size else None)

    def all_jobs(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` jobs of every project and location."""
        rows = self.db.query("SELECT body FROM tuning_jobs ORDER BY seq DESC LIMIT ?", (limit,))
        return [json.loads(row["body"]) for row in rows]

    def jobs_in_states(self, states: Iterable[JobState]) -> list[dict[str, Any]]:
        names = [state.name for state in states]
        rows = self.db.query(f"SELECT body FROM tuning_jobs WHERE state IN ({','.join('?' * len(names))}) ORDER BY seq",
                             tuple(names))
        return [json.loads(row["body"]) for row in rows]

    def request_cancel(self, project: str, location: str, job_id: str) -> None:
        """PENDING/QUEUED → CANCELLED at once; RUNNING → CANCELLING (the runner finishes it); ended → 400."""
        job = self.job(project, location, job_id)
        if state_of(job) in ENDED_STATES:
            raise FailedPrecondition(f"Cannot cancel tuning job {job['name']} in state {job['state']}.")
        if self.update_job(job_id, only_if_state_in={JobState.JOB_STATE_PENDING, JobState.JOB_STATE_QUEUED},
                           **cancelled_fields()) is None:
            self.update_job(job_id, only_if_state_in={JobState.JOB_STATE_RUNNING}, state=JobState.JOB_STATE_CANCELLING)

    def end_job(self, job_id: str, state: JobState, *, tuned_model: Optional[tuple[str, str]] = None,
                **fields: Any) -> Optional[dict[str, Any]]:
        """The runner's final transition, atomic with respect to a cancel; returns the new body or None.

        A RUNNING or PENDING job moves to `state` with `endTime` and `fields`; a CANCELLING one ends
        CANCELLED instead (`cancelled_fields()`), whatever `state` the run reached. With `tuned_model`
        (display name, model dir) and `state` SUCCEEDED, the tuned model and its endpoint are inserted in the
        same transaction as the state change, so a cancelled job never gets one. A job already ended is left
        as it is (None). NotFound when there is no such job (a reset forgot it).
        """
        with self.db.transaction() as conn:
            row = _job_row(conn, job_id)
            body = json.loads(row["body"])
            current = state_of(body)
            if current == JobState.JOB_STATE_CANCELLING:
                changes = cancelled_fields()
            elif current in (JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_PENDING):
                changes = {**fields, "state": state, "endTime": now_rfc3339()}
                if tuned_model is not None and state == JobState.JOB_STATE_SUCCEEDED:
                    record = insert_tuned_model(conn, row["project"], row["location"], job_id, *tuned_model)
                    changes["tunedModel"] = {"model": record.model_name, "endpoint": record.endpoint_name}
            else:
                return None
            _write_job(conn, job_id, body, changes)
        return body

    # --- metrics ----------------------------------------------------------------------------------

    def add_metric_point(self, job_id: str, step: int, metrics: dict[str, float]) -> None:
        now = now_rfc3339()
        with self.db.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO metric_points (job_id, step, metric, value, time) VALUES (?,?,?,?,?)",
                             [(job_id, step, name, float(value), now) for name, value in metrics.items()])

    def clear_metrics(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM metric_points WHERE job_id = ?", (job_id,))

    def metric_series(self, job_id: str) -> dict[str, list[dict[str, Any]]]:
        """{metric: [{step, value, time}, ...]} in step order."""
        series: dict[str, list[dict[str, Any]]] = {}
        for row in self.db.query("SELECT step, metric, value, time FROM metric_points WHERE job_id = ? "
                                 "ORDER BY metric, step", (job_id,)):
            series.setdefault(row["metric"], []).append({"step": row["step"], "value": row["value"],
                                                         "time": row["time"]})
        return series

    def reset(self) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM tuning_jobs")
            conn.execute("DELETE FROM metric_points")


def _job_row(conn: Any, job_id: str) -> Any:
    row = conn.execute("SELECT project, location, body FROM tuning_jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise NotFound(f"TuningJob {job_id} not found.")
    return row


def _write_job(conn: Any, job_id: str, body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Merge camelCase `fields` into `body` (None removes a field) and store it, inside the caller's transaction."""
    for key, value in fields.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value.name if isinstance(value, JobState) else value
    body["updateTime"] = now_rfc3339()
    conn.execute("UPDATE tuning_jobs SET body = ?, state = ? WHERE id = ?", (json.dumps(body), body["state"], job_id))


def cancelled_fields() -> dict[str, Any]:
    """The fields of a job that ends CANCELLED (error code CANCELLED, per the cancel RPC's documentation)."""
    return {"state": JobState.JOB_STATE_CANCELLED, "endTime": now_rfc3339(),
            "error": job_error(Cancelled("the tuning job was cancelled by the user."))}

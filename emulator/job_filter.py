"""tuningJobs.list filters: `labels.KEY="VALUE"` (or !=), `labels.KEY:*` (has the label), `state=JOB_STATE_X`
(or !=), `base_model="..."` (also `baseModel`), in the emulator's one filter grammar (`emulator.list_filter`)."""

from __future__ import annotations

from emulator.jobs import job_state
from emulator.list_filter import Predicate, UnknownField, UnsupportedOperator, equality, parse_filter

SUPPORTED = ('labels.KEY="VALUE", labels.KEY:*, state=JOB_STATE_..., base_model="..." joined by AND / OR, with '
             'parentheses.')


def _term(field: str, op: str, value: str) -> Predicate:
    if field.startswith("labels."):
        key = field[len("labels."):]
        if op == ":" and value == "*":
            return lambda job: key in (job.get("labels") or {})
        return equality(op, lambda job: (job.get("labels") or {}).get(key), value)
    if field == "state":
        if op not in ("=", "!="):
            raise UnsupportedOperator(op)
        return equality(op, lambda job: job.get("state"), job_state(value).name)
    if field in ("base_model", "baseModel"):
        return equality(op, lambda job: job.get("baseModel"), value)
    raise UnknownField(field)


def parse_job_filter(text: str) -> Predicate:
    """A predicate over job bodies; an empty filter matches every job."""
    return parse_filter(text, _term, SUPPORTED)

"""The subset of AIP-160 list filters the emulator understands for tuningJobs.list.

Supported terms, joined by `AND`: `labels.KEY="VALUE"`, `labels.KEY:*` (has the label),
`state=JOB_STATE_X` or `state!=...`, `base_model="..."` (also `baseModel`). Quotes are optional.
Anything else is rejected with INVALID_ARGUMENT rather than silently ignored.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from emulator.errors import InvalidArgument
from emulator.job_state import JobState

Predicate = Callable[[dict[str, Any]], bool]

_TERM = re.compile(r'^\s*(?P<field>[A-Za-z_][\w.\-]*)\s*(?P<op>!=|=|:)\s*(?P<value>"[^"]*"|\S+)\s*$')
_AND = re.compile(r"\s+AND\s+", re.IGNORECASE)


def parse_filter(text: str) -> Predicate:
    """Compile `text` to a predicate over a job body; an empty filter matches everything."""
    if not text or not text.strip():
        return lambda job: True
    predicates = [_parse_term(term) for term in _AND.split(text.strip())]
    return lambda job: all(predicate(job) for predicate in predicates)


def _parse_term(term: str) -> Predicate:
    match = _TERM.match(term)
    if not match:
        raise InvalidArgument(f"Unsupported filter term {term!r}; supported: labels.KEY=\"VALUE\", labels.KEY:*, "
                              "state=JOB_STATE_..., base_model=\"...\" joined by AND.")
    field, op, value = match.group("field"), match.group("op"), match.group("value").strip('"')
    if field.startswith("labels."):
        key = field[len("labels."):]
        if op == ":" and value == "*":
            return lambda job: key in (job.get("labels") or {})
        if op == "=":
            return lambda job: (job.get("labels") or {}).get(key) == value
        if op == "!=":
            return lambda job: (job.get("labels") or {}).get(key) != value
    elif field == "state" and op in ("=", "!="):
        try:
            state = JobState.parse(value).value
        except (ValueError, IndexError) as error:
            raise InvalidArgument(f"Unknown job state {value!r} in filter.") from error
        return (lambda job: job.get("state") == state) if op == "=" else (lambda job: job.get("state") != state)
    elif field in ("base_model", "baseModel") and op in ("=", "!="):
        return ((lambda job: job.get("baseModel") == value) if op == "="
                else (lambda job: job.get("baseModel") != value))
    elif field not in ("state", "base_model", "baseModel"):
        raise InvalidArgument(f"Unsupported filter term {term!r}: unknown field {field!r}; supported fields: "
                              "labels.KEY, state, base_model.")
    raise InvalidArgument(f"Unsupported filter term {term!r}: operator {op!r} is not supported on {field!r}.")

"""Tuning job states as the emulator stores them: by name, as the REST JSON writes them.

`JobState` has the members of the official `aiplatform_v1.JobState`, valued by their names; `ENDED_STATES` is
`tuning.vertex.ENDED_STATES` in these members.
"""

from __future__ import annotations

import enum

from google.cloud import aiplatform_v1

from tuning.vertex import ENDED_STATES as _ENDED_STATES


class _ByName(str, enum.Enum):
    @classmethod
    def parse(cls, value: str | int) -> "JobState":
        """A member from a name (with or without `JOB_STATE_`, any case) or a proto number.

        Raises:
            ValueError: neither.
        """
        if isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit()):
            return cls(aiplatform_v1.JobState(int(value)).name)
        name = str(value).upper()
        return cls(name if name.startswith("JOB_STATE_") else f"JOB_STATE_{name}")


JobState = _ByName("JobState", [(state.name, state.name) for state in aiplatform_v1.JobState])
ENDED_STATES = frozenset(JobState(state.name) for state in _ENDED_STATES)

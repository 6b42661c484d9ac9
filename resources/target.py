"""Where a dynamic provider sends its calls, read from the stack config in `configure()`.

Providers are pickled into the state, so they keep only this plain value, never a client.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pulumi.output import Unknown

from resources.embedded import resolve_endpoint
from resources.errors import report_provider_errors_without_traceback
from resources.provider_process import exit_without_teardown_once, watch_engine_once
from tuning.api_target import ApiTarget
from tuning.errors import ConfigError

if TYPE_CHECKING:
    from tuning.client import TuningApi
    from tuning.storage import StorageApi

# Pulumi's wire marker for a value unknown during preview; deserialised it becomes an `Unknown`.
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def is_unknown(value: Any) -> bool:
    """True for a value (or a container holding a value) not known until the update."""
    if isinstance(value, Unknown) or value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(is_unknown(item) for item in value.values())
    if isinstance(value, list):
        return any(is_unknown(item) for item in value)
    return False


def target_from_config(config: Any) -> Optional[ApiTarget]:
    """ApiTarget from a `pulumi.dynamic.Config` (or any object with `get(full_key)`); None without a project.

    `embedded` starts or reuses the background emulator of the working directory, which the engine sets to
    the program's folder when it starts the provider plugin.

    Raises:
        EmulatorError: the stack is `embedded` and the background emulator could not be started.
    """
    project = config.get("gcp:project")
    if not project:
        return None
    endpoint = resolve_endpoint(config.get("translation-tuning:emulatorEndpoint") or None, Path.cwd())
    return ApiTarget(project=project, location=config.get("gcp:region") or "us-central1", emulator_endpoint=endpoint)


class TargetedProvider:
    """Mixin: `configure()` stores the target; `target` raises a clear error when it is missing.

    Providers raise `TuningError`s for expected failures (an API call that failed for good, a job that failed, a
    missing setting); the engine shows them as `error: <message>`, without a traceback.
    """

    _target: Optional[ApiTarget] = None

    def configure(self, req: Any) -> None:
        # First: the host calls configure() before any provider method, and configure itself may fail (embedded).
        report_provider_errors_without_traceback()
        watch_engine_once()
        exit_without_teardown_once()
        self._target = target_from_config(req.config)

    @property
    def target(self) -> ApiTarget:
        if self._target is None:
            raise ConfigError("gcp:project", "is not set for this stack (pulumi config set gcp:project PROJECT)")
        return self._target

    # The clients are imported on first use, not with the provider's module: the provider process imports that
    # module to unpickle the provider for every check and diff, and a no-op preview makes no other call.
    # google-cloud-storage, requests and pydantic then never load there (README, "Performance").

    def storage_api(self) -> "StorageApi":
        """A Cloud Storage client for the target."""
        from tuning.storage import StorageApi

        return StorageApi(self.target)

    def tuning_api(self) -> "TuningApi":
        """A Vertex AI tuning client for the target."""
        from tuning.client import TuningApi

        return TuningApi(self.target)

    def __getstate__(self) -> dict[str, Any]:
        # Never pickle the configured target into the state: it is re-read from config on every run.
        state = dict(self.__dict__)
        state.pop("_target", None)
        return state

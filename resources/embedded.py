"""`emulatorEndpoint: embedded`: start or reuse the project's background emulator and use its URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import pulumi

if TYPE_CHECKING:
    from resources.settings import StackSettings

# `emulatorEndpoint: embedded` means: the program (and the provider plugin, in its own process) starts or
# reuses the project's background emulator in `.run/emulator` and uses its URL.
EMBEDDED = "embedded"


def resolve_endpoint(value: Optional[str], project_dir: Path) -> Optional[str]:
    """The emulator URL a stack config value stands for.

    The program and the provider plugin both call this, each in its own process; the background emulator's
    lock makes them share one emulator.

    Args:
        value: The `translation-tuning:emulatorEndpoint` value: a URL, `embedded`, or None for real GCP.
        project_dir: The Pulumi project folder whose `.run/emulator` holds the background emulator.

    Returns:
        The running background emulator's URL for `embedded`, else `value` unchanged.

    Raises:
        EmulatorError: the background emulator could not be started; the message names its log file.
    """
    if value != EMBEDDED:
        return value
    # Imported here: every provider process resolves its endpoint, and only `embedded` stacks need this module.
    from emulator.background import BackgroundEmulator

    return BackgroundEmulator.for_project(project_dir).ensure_running()


def start_embedded_emulator(settings: "StackSettings", project_dir: Path) -> Optional[str]:
    """On an `embedded` stack, start (or reuse) the background emulator before any resource is declared.

    Its URL is logged, not exported: the port changes whenever the emulator restarts, and an output would
    show that as a change of the stack.

    Args:
        settings: The stack settings.
        project_dir: The folder of the program's `__main__.py`.

    Returns:
        The emulator URL, or None when the stack does not use `embedded`.

    Raises:
        EmulatorError: the background emulator could not be started.
    """
    if settings.emulator_endpoint != EMBEDDED:
        return None
    url = resolve_endpoint(EMBEDDED, project_dir)
    pulumi.log.info(f"emulator console: {url}/")
    return url

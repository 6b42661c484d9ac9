"""`python -m emulator [--host H] [--port P] [--data-dir D] [--training.steps N] ...`: serve the Vertex AI + GCS
emulator; every setting of `emulator.settings` is an option (`--help` lists them) and a TT_EMULATOR_* variable."""

from __future__ import annotations

from pydantic_settings import CliApp

from emulator.server import serve_forever
from emulator.settings import EmulatorSettings


def main(argv: list[str] | None = None) -> None:
    serve_forever(CliApp.run(EmulatorSettings, cli_args=argv))


if __name__ == "__main__":
    main()

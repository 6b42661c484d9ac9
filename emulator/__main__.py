"""`python -m emulator [--host H] [--port P] [--data-dir D]`: serve the Vertex AI + GCS emulator."""

from __future__ import annotations

import argparse
from pathlib import Path

from emulator.server import serve_forever
from emulator.settings import EmulatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--host", help="bind address (default 127.0.0.1, env TT_EMULATOR_HOST)")
    parser.add_argument("--port", type=int, help="port, 0 for any free one (default 8080, env TT_EMULATOR_PORT)")
    parser.add_argument("--data-dir", type=Path, help="state folder (default .emulator-data, env TT_EMULATOR_DATA_DIR)")
    args = parser.parse_args(argv)
    overrides = {key: value for key, value in
                 (("host", args.host), ("port", args.port), ("data_dir", args.data_dir)) if value is not None}
    serve_forever(EmulatorSettings(**overrides))


if __name__ == "__main__":
    main()

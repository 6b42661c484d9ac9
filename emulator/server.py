"""Run the emulator app with uvicorn: in the foreground (`python -m emulator`) or in a thread for tests."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import uvicorn

from emulator.app import create_app
from emulator.settings import EmulatorSettings


@dataclass(frozen=True)
class RunningEmulator:
    """A served emulator: its base URL (`http://127.0.0.1:PORT`) and the app's state objects."""

    url: str
    port: int
    app: object

    @property
    def state(self):
        return self.app.state.emulator


def _uvicorn_config(app, settings: EmulatorSettings) -> uvicorn.Config:
    return uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning",
                          lifespan="on", access_log=False, timeout_graceful_shutdown=5)


@contextmanager
def serve_in_thread(settings: EmulatorSettings) -> Iterator[RunningEmulator]:
    """Serve on `settings.port` (0 = any free port) until the block exits."""
    app = create_app(settings)
    server = uvicorn.Server(_uvicorn_config(app, settings))
    thread = threading.Thread(target=server.run, name="emulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("emulator did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningEmulator(url=f"http://{settings.host}:{port}", port=port, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def serve_forever(settings: EmulatorSettings) -> None:
    """Serve in the foreground; prints `emulator listening on http://HOST:PORT` once bound."""
    server = uvicorn.Server(_uvicorn_config(create_app(settings), settings))
    # Bound and listening before it says so: port 0 is resolved, and a client may connect at once.
    sock = server.config.bind_socket()
    sock.listen()
    url = f"http://{settings.host}:{sock.getsockname()[1]}"
    print(f"emulator listening on {url}", flush=True)
    print(f"console: {url}/", flush=True)
    server.run(sockets=[sock])

"""Start the local emulator in the background for the `local` stack, or reuse the one already running.

It keeps running after `make demo` so its console stays open; `python -m deploy emulator-stop` ends it.
Its state (and so the jobs the stack's Pulumi state refers to) lives in `.run/emulator/data`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests

STARTUP_TIMEOUT = 60


@dataclass(frozen=True)
class EmulatorProcess:
    run_dir: Path

    @property
    def endpoint_file(self) -> Path:
        return self.run_dir / "endpoint"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "emulator.log"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    def _live_pid(self) -> Optional[int]:
        """The pid in the pid file, if that process is still our emulator (pids get reused)."""
        try:
            pid = int(self.pid_file.read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        is_ours = b"emulator" in command and str(self.data_dir).encode() in command
        return pid if is_ours else None

    def running_endpoint(self) -> Optional[str]:
        """The URL of the healthy emulator started from this folder, if any."""
        if self._live_pid() is None or not self.endpoint_file.exists():
            return None
        url = self.endpoint_file.read_text().strip()
        return url if self._healthy(url) else None

    def ensure_running(self, extra_env: Optional[dict[str, str]] = None) -> str:
        """The endpoint of a running emulator, starting one on a free loopback port if needed.

        Never starts a second emulator on the same data dir: if ours is alive but slow to answer, wait.
        """
        if self._live_pid() is not None and self.endpoint_file.exists():
            url = self.endpoint_file.read_text().strip()
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while time.monotonic() < deadline:
                if self._healthy(url):
                    return url
                time.sleep(0.5)
            raise RuntimeError(f"the emulator (pid {self._live_pid()}) at {url} does not answer; see "
                               f"{self.log_file}, or stop it with `make emulator-stop`")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.endpoint_file.unlink(missing_ok=True)
        with open(self.log_file, "wb") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", str(self.data_dir)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent, env={**os.environ, **(extra_env or {})})
        self.pid_file.write_text(str(child.pid))
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"the emulator exited with status {child.returncode}; see {self.log_file}")
            for line in self.log_file.read_text(errors="replace").splitlines():
                if line.startswith("emulator listening on "):
                    url = line.split()[-1]
                    if self._healthy(url):
                        self.endpoint_file.write_text(url)
                        return url
            time.sleep(0.2)
        raise RuntimeError(f"the emulator did not start within {STARTUP_TIMEOUT}s; see {self.log_file}")

    def stop(self) -> bool:
        """Stop the background emulator; False when none of ours was running."""
        pid = self._live_pid()
        self.pid_file.unlink(missing_ok=True)
        self.endpoint_file.unlink(missing_ok=True)
        if pid is None:
            return False
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return requests.get(f"{url}/_emulator/health", timeout=5).ok
        except requests.RequestException:
            return False

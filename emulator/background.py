"""`python -m emulator.background {start,stop,status}`: the project's emulator, run in the background and reused."""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Optional

import requests

from tuning.errors import EmulatorError

STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# `python -m emulator` must be importable by the child whatever the caller's working directory is.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
LISTENING = "emulator listening on "
STOP_HINT = "`make emulator-stop` (or `python -m emulator.background stop`) ends it"


class BackgroundEmulator:
    """One emulator per run dir: `pid`, `endpoint`, `emulator.log`, its state in `data`, and a `lock` file.

    It outlives the process that started it (the Pulumi program, a dynamic provider, or this module's CLI),
    so its console stays open and the jobs the stack's state refers to keep their data; `stop()` ends it.
    """

    def __init__(self, run_dir: Path) -> None:
        # The data dir is passed to the child, whose working directory differs, and is matched against its
        # /proc cmdline later: both need one absolute spelling.
        self.run_dir = Path(run_dir).resolve()
        self.endpoint_file, self.pid_file, self.log_file, self.data_dir, self.lock_file = (
            self.run_dir / name for name in ("endpoint", "pid", "emulator.log", "data", "lock"))

    @classmethod
    def for_project(cls, project_dir: Path) -> BackgroundEmulator:
        """The background emulator of a Pulumi project (the folder holding `Pulumi.yaml`), in `.run/emulator`."""
        return cls(Path(project_dir) / ".run" / "emulator")

    def ensure_running(self, extra_env: Optional[dict[str, str]] = None) -> str:
        """The base URL (`http://127.0.0.1:PORT`) of this run dir's emulator, starting one on a free loopback port,
        with `extra_env` added to its environment, if none is running.

        Callers in several processes (the program and the provider plugin, or two commands) take turns under
        an exclusive lock, so one data dir never gets two emulators: the later caller reuses the first's.
        Raises EmulatorError, naming the log file, when it exits at start or does not answer in time, or the run
        dir is not writable.
        """
        try:
            with self._locked():
                return self._reuse() or self._start(extra_env)
        except OSError as error:
            raise EmulatorError(f"cannot run the emulator in {self.run_dir}: {error}") from error

    def running_endpoint(self) -> Optional[str]:
        """The URL of the healthy emulator started from this run dir, if any (starts nothing)."""
        if self.pid() is None or not self.endpoint_file.exists():
            return None
        url = self.endpoint_file.read_text().strip()
        return url if self._healthy(url) else None

    def stop(self) -> bool:
        """Stop the background emulator and wait until it has exited; False when none of ours was running (a pid
        file naming another process is ignored, not killed)."""
        if not self.run_dir.exists():
            return False
        with self._locked():
            pid = self.pid()
            self.pid_file.unlink(missing_ok=True)
            self.endpoint_file.unlink(missing_ok=True)
            if pid is None:
                return False
            self._terminate(pid)
            return True

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # flock, not a lock file's existence: the kernel drops it when its holder closes it or dies, so a crash
        # never leaves the run dir locked.
        with open(self.lock_file, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _reuse(self) -> Optional[str]:
        """The URL of our emulator if it is alive, waiting while it comes up; None when none is alive."""
        pid = self.pid()
        if pid is None:
            return None
        # Alive but not (yet) answering, e.g. started by a caller that died before writing the endpoint:
        # wait for it rather than start a second emulator on the same data dir.
        url = self._await_url(lambda: self._is_ours(pid))
        if url is None and self._is_ours(pid):
            raise EmulatorError(f"the emulator (pid {pid}) does not answer; see {self.log_file}; {STOP_HINT}")
        return url

    def _start(self, extra_env: Optional[dict[str, str]]) -> str:
        self.endpoint_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)
        with open(self.log_file, "wb") as log:
            # Own session: the engine ends its plugins' process groups, and this must outlive them. No
            # inherited stdin/stdout/stderr either, or whoever reads the caller's pipes would wait for it.
            child = subprocess.Popen(
                [sys.executable, "-m", "emulator", "--host", "127.0.0.1", "--port", "0",
                 "--data-dir", str(self.data_dir)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True, cwd=PACKAGE_ROOT, env={**os.environ, **(extra_env or {})})
        self.pid_file.write_text(str(child.pid))
        url = self._await_url(lambda: child.poll() is None)
        if url is not None:
            return url
        self.pid_file.unlink(missing_ok=True)
        exited = child.poll()
        if exited is not None:
            raise EmulatorError(f"the emulator exited at start (status {exited}); see {self.log_file}")
        self._terminate(child.pid)  # do not leave it half started: the next caller would wait on it again
        child.wait()
        raise EmulatorError(f"the emulator did not answer within {STARTUP_TIMEOUT:.0f}s; see {self.log_file}")

    def _await_url(self, alive: Callable[[], bool]) -> Optional[str]:
        """The URL our emulator answers on, recorded in the endpoint file once it answers; None when it stops being
        `alive` or does not answer within STARTUP_TIMEOUT."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and alive():
            url = self._recorded_url()
            if url and self._healthy(url):
                self.endpoint_file.write_text(url)
                return url
            time.sleep(0.2)
        return None

    def _recorded_url(self) -> Optional[str]:
        """The endpoint file's URL, else the one the current emulator printed to its log (each start truncates it)."""
        if self.endpoint_file.exists():
            return self.endpoint_file.read_text().strip() or None
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return None
        urls = [line[len(LISTENING):].strip() for line in lines if line.startswith(LISTENING)]
        return urls[-1] if urls else None

    def pid(self) -> Optional[int]:
        """The process id of this run dir's emulator while it runs: the pid file's, if that process is still our
        emulator (pids get reused)."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        """True while `pid` runs `-m emulator` on this data dir (a zombie's cmdline is empty)."""
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return b"emulator" in command and str(self.data_dir).encode() in command

    def _terminate(self, pid: int) -> None:
        """SIGTERM the emulator's process group (its trainers too), SIGKILL it if it outstays STOP_TIMEOUT."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + STOP_TIMEOUT
            while time.monotonic() < deadline:
                if not self._is_ours(pid):
                    return
                time.sleep(0.1)

    @staticmethod
    def _healthy(url: str) -> bool:
        try:
            return requests.get(f"{url}/_emulator/health", timeout=5).ok
        except requests.RequestException:
            return False


def main(argv: Optional[list[str]] = None) -> int:
    """The CLI: `start` prints the URL, `stop` ends the emulator, `status` prints the URL if it runs. Exits 1 when
    the emulator failed to start or (for status) is not running."""
    parser = argparse.ArgumentParser(prog="python -m emulator.background", description=__doc__)
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--project-dir", type=Path, default=PACKAGE_ROOT,
                        help="Pulumi project whose .run/emulator to use (default: this repository)")
    args = parser.parse_args(argv)
    emulator = BackgroundEmulator.for_project(args.project_dir)
    if args.command == "stop":
        print("emulator stopped" if emulator.stop() else "no emulator was running")
        return 0
    if args.command == "status":
        url = emulator.running_endpoint()
        print(url or "no emulator is running")
        return 0 if url else 1
    try:
        print(emulator.ensure_running())
    except EmulatorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

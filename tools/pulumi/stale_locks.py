"""Clear the stack locks of `pulumi` processes that died on this host (file:// backends only).

A `pulumi up` that is killed (SIGKILL, a closed terminal, an OOM kill, a lost CI runner) leaves its lock
file in the backend, and every later command on the stack stops with "the stack is currently locked by 1
lock(s)" until someone runs `pulumi cancel`. `tools/pulumi/activate` runs this before each command that takes
the lock, so the same command simply works again. A lock is removed only when its holder is provably gone:

* it was taken on this host (same hostname), and
* its pid is not running (or is a zombie), or that pid now belongs to a process that started after the lock
  was taken (the pid was reused), and is not a `pulumi` process.

A lock held by a live process, or taken on another host, is left alone: Pulumi then reports it as usual.
Locks in gs:// (or any other non-file) backends are never touched; `pulumi cancel` stays the way to clear them.

Usage (the activate script's `pulumi` function calls it; PULUMI_BACKEND_URL names the backend):
    python tools/pulumi/stale_locks.py --stack STACK [-- PULUMI_ARGS...]
PULUMI_ARGS are the command's own arguments, read for `--cwd`/`-C` (where to look for Pulumi.yaml).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional
from urllib.parse import unquote, urlsplit

# A process start time is known to within a clock tick, and the boot time it is counted from only to the
# second (and it moves a little when the clock is slewed): a pid counts as reused only when its process
# started this long after the lock was taken. Reusing a pid within seconds needs the whole pid space to wrap.
START_TIME_SLACK_SECONDS = 2.0
HOLDER_NAME = "pulumi"


@dataclass(frozen=True)
class Lock:
    """One lock file of the file backend, as Pulumi writes it (`lockContent` in pkg/backend/diy/lock.go)."""

    path: Path
    pid: int
    username: str
    hostname: str
    timestamp: datetime

    @classmethod
    def read(cls, path: Path) -> Optional[Lock]:
        """The lock in `path`, or None when it cannot be read or parsed (then it is left to Pulumi)."""
        try:
            content = json.loads(path.read_text())
            return cls(path=path, pid=int(content["pid"]), username=str(content.get("username", "")),
                       hostname=str(content["hostname"]), timestamp=datetime.fromisoformat(content["timestamp"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Host:
    """What is known about this machine's processes; the defaults read the running system."""

    hostname: str
    proc: Path = Path("/proc")

    @classmethod
    def current(cls) -> Host:
        # Go's os.Hostname(), which wrote the lock, reads the kernel's hostname, as this does.
        return cls(hostname=socket.gethostname())

    def is_running(self, pid: int) -> bool:
        """True while `pid` exists and is not a zombie (a dead process its parent has not reaped yet)."""
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's live process
        state = self._stat_fields(pid)
        return state is None or state[0] not in ("Z", "X")

    def start_time(self, pid: int) -> Optional[float]:
        """When `pid`'s process started (seconds since the epoch), or None when /proc does not say."""
        fields = self._stat_fields(pid)
        boot = self._boot_time()
        if fields is None or boot is None or len(fields) < 20:
            return None
        try:
            ticks = int(fields[19])  # field 22 of /proc/PID/stat: start time in clock ticks after boot
        except ValueError:
            return None
        return boot + ticks / os.sysconf("SC_CLK_TCK")

    def command_name(self, pid: int) -> Optional[str]:
        try:
            return (self.proc / str(pid) / "comm").read_text().strip()
        except OSError:
            return None

    def _stat_fields(self, pid: int) -> Optional[list[str]]:
        """The fields of /proc/PID/stat after the command name (which may hold spaces and parentheses)."""
        try:
            stat = (self.proc / str(pid) / "stat").read_text()
        except OSError:
            return None
        return stat[stat.rfind(")") + 1:].split()

    def _boot_time(self) -> Optional[float]:
        try:
            for line in (self.proc / "stat").read_text().splitlines():
                if line.startswith("btime "):
                    return float(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None


def holder_is_gone(lock: Lock, host: Host) -> bool:
    """True only when the process that took `lock` has provably ended (see the module docstring)."""
    if lock.hostname != host.hostname:
        return False  # another machine's process: nothing here can tell whether it still runs
    if not host.is_running(lock.pid):
        return True
    started = host.start_time(lock.pid)
    if started is None or started <= lock.timestamp.timestamp() + START_TIME_SLACK_SECONDS:
        return False  # the process that took the lock, still running (or nothing proves otherwise)
    # Started after the lock: the pid was reused. A `pulumi` there is still given the benefit of the doubt (a
    # wall clock stepped forward since the lock makes the holder itself look younger than its lock).
    return host.command_name(lock.pid) != HOLDER_NAME


def state_dir(backend_url: str) -> Optional[Path]:
    """The folder of a file:// backend URL (`file://~/x`, `file:///abs`, `file://relative`); None for others."""
    parts = urlsplit(backend_url)
    if parts.scheme != "file":
        return None
    path = unquote(parts.netloc + parts.path)
    return Path(os.path.expanduser(path)) if path else None


def project_name(start: Path) -> Optional[str]:
    """The `name:` of the Pulumi.yaml that Pulumi would use from `start` (that folder or a parent)."""
    for folder in (start, *start.parents):
        for candidate in ("Pulumi.yaml", "Pulumi.yml"):
            path = folder / candidate
            if path.is_file():
                import yaml  # the project's venv has it; imported only when a lock may need clearing

                try:
                    name = (yaml.safe_load(path.read_text()) or {}).get("name")
                except (OSError, yaml.YAMLError, AttributeError):
                    return None
                return str(name) if name else None
    return None


def lock_files(state: Path, project: Optional[str], stack: str) -> list[Path]:
    """The lock files of `stack`: project-scoped layout (`organization/PROJECT/STACK`), then the legacy one."""
    locks = state / ".pulumi" / "locks"
    folders = [locks / stack] if project is None else [locks / "organization" / project / stack, locks / stack]
    return sorted(path for folder in folders if folder.is_dir() for path in folder.glob("*.json") if path.is_file())


def clear_stale_locks(paths: Iterable[Path], host: Host) -> list[Lock]:
    """Remove each lock whose holder is gone (and the backend's `.attrs` file beside it); returns them."""
    removed = []
    for path in paths:
        lock = Lock.read(path)
        if lock is None or not holder_is_gone(lock, host):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue  # someone else cleared it meanwhile
        path.with_name(path.name + ".attrs").unlink(missing_ok=True)
        removed.append(lock)
    return removed


def working_dir(pulumi_args: list[str]) -> Path:
    """The folder the pulumi command works in: its `--cwd`/`-C` if given, else the current one."""
    for index, arg in enumerate(pulumi_args):
        if arg in ("--cwd", "-C") and index + 1 < len(pulumi_args):
            return Path(pulumi_args[index + 1]).resolve()
        if arg.startswith("--cwd="):
            return Path(arg.removeprefix("--cwd=")).resolve()
    return Path.cwd()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="stale_locks.py", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the stack the command targets")
    parser.add_argument("pulumi_args", nargs=argparse.REMAINDER, help="-- and the pulumi command's arguments")
    args = parser.parse_args(argv)
    state = state_dir(os.environ.get("PULUMI_BACKEND_URL", ""))
    if state is None:
        return 0
    pulumi_args = args.pulumi_args[1:] if args.pulumi_args[:1] == ["--"] else args.pulumi_args
    # Without a project the legacy layout is the only one to look at.
    paths = lock_files(state, project_name(working_dir(pulumi_args)), args.stack.rsplit("/", 1)[-1])
    if not paths:
        return 0
    for lock in clear_stale_locks(paths, Host.current()):
        print(f"note: removed the lock of pulumi (pid {lock.pid} on {lock.hostname}), which is no longer running",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

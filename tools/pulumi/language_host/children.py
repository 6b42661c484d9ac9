"""Child processes of the host: streamed line by line, cancellable.

Children stay in the host's process group (as with the Go host): when the engine kills that group,
after a crash or a lost deploy, a running program or policy pack goes with it instead of living on.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from typing import IO, Iterator, Optional, Sequence

# The engine gives a plugin 5 s between SIGINT and SIGKILL; the host gives its children the same.
KILL_AFTER_SECONDS = 5.0


class Children:
    """Every child the host has running, so that Cancel (and the host's own shutdown) can stop them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: set[subprocess.Popen] = set()

    def start(self, command: Sequence[str], *, cwd: str, env: dict[str, str], capture: bool) -> subprocess.Popen:
        """Start `command`; with `capture`, its stdout and stderr are pipes.

        Raises:
            OSError: the executable could not be started.
        """
        pipe = subprocess.PIPE if capture else None
        child = subprocess.Popen(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=pipe,
                                 stderr=pipe)
        with self._lock:
            self._running.add(child)
        return child

    def forget(self, child: subprocess.Popen) -> None:
        with self._lock:
            self._running.discard(child)

    def wait(self, child: subprocess.Popen) -> int:
        try:
            return child.wait()
        finally:
            self.forget(child)

    def cancel_all(self) -> None:
        """SIGINT every running child, then SIGKILL those still alive after the grace period."""
        with self._lock:
            running = list(self._running)
        # One thread per child: stopping them one after the other would hold back the next child's SIGINT
        # (and its SIGKILL) for as long as the previous one takes to exit, up to the grace period each.
        stopping = [threading.Thread(target=stop, args=(child,), daemon=True, name=f"stop-{child.pid}")
                    for child in running]
        for thread in stopping:
            thread.start()
        for thread in stopping:
            thread.join()


def stop(child: subprocess.Popen) -> None:
    """SIGINT the child; SIGKILL it if it has not exited within KILL_AFTER_SECONDS."""
    if child.poll() is not None:
        return
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=KILL_AFTER_SECONDS)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def stream_lines(child: subprocess.Popen, stdout: Optional[IO[bytes]] = None) -> Iterator[tuple[str, bytes]]:
    """Yield ("stdout" | "stderr", line) from the child's pipes as lines arrive, until both close.

    Args:
        child: a process started with capture=True.
        stdout: read this instead of `child.stdout` (when the caller has consumed the first lines itself).
    """
    lines: queue.Queue[Optional[tuple[str, bytes]]] = queue.Queue()
    sources = {"stdout": stdout or child.stdout, "stderr": child.stderr}

    def pump(name: str, pipe: IO[bytes]) -> None:
        try:
            for line in iter(pipe.readline, b""):
                lines.put((name, line))
        finally:
            lines.put(None)

    for name, pipe in sources.items():
        threading.Thread(target=pump, args=(name, pipe), daemon=True, name=f"pump-{name}-{child.pid}").start()
    open_pipes = len(sources)
    while open_pipes:
        item = lines.get()
        if item is None:
            open_pipes -= 1
        else:
            yield item

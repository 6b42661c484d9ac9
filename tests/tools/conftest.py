"""Fixtures for the language host tests: the installed host, run as the engine runs it, and a fake engine."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import grpc
import pytest
from pulumi.runtime.proto import language_pb2_grpc

from tests.conftest import REPO
from tests.tools.fake_engine import FakeEngine


@pytest.fixture(scope="session")
def bin_dir() -> Path:
    """The folder build.sh installed the pinned CLI and our host into (it refreshes a stale host copy)."""
    out = subprocess.run(["bash", str(REPO / "tools" / "pulumi" / "build.sh")], check=True, capture_output=True,
                         text=True, timeout=600).stdout
    folder = Path(out.strip().splitlines()[-1])
    # Only the cache build holds our host; a user's own pulumi install would test the Go host instead.
    assert (folder / "language_host" / "runtime_service.py").exists(), f"{folder} does not hold our language host"
    return folder


class HostProcess:
    """`pulumi-language-python ENGINE_ADDRESS` started as the engine starts it, with its stdout drained."""

    def __init__(self, bin_dir: Path, engine_address: str, cwd: Path, stderr_path: Path) -> None:
        self._stderr_file = stderr_path.open("wb")
        self.stderr_path = stderr_path
        # Own process group, like a plugin of the engine; stdout is a pipe because the port arrives there.
        self.process = subprocess.Popen([str(bin_dir / "pulumi-language-python"), engine_address], cwd=cwd,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._stderr_file,
                                        start_new_session=True)
        first = self.process.stdout.readline()
        assert first.strip().isdigit(), f"first stdout line is not a port: {first!r}; {self.stderr()}"
        self.port = int(first)
        self.stdout = bytearray()
        # Programs run by Run print to the host's stdout: keep reading it so a full pipe never blocks them.
        threading.Thread(target=self._drain, daemon=True).start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.stub = language_pb2_grpc.LanguageRuntimeStub(self.channel)

    def _drain(self) -> None:
        for chunk in iter(lambda: self.process.stdout.read1(65536), b""):
            self.stdout.extend(chunk)

    def stderr(self) -> str:
        self._stderr_file.flush()
        return self.stderr_path.read_text(errors="replace")

    def stop(self) -> tuple[int, str]:
        """SIGINT, as the engine ends a host; returns (exit code, stderr)."""
        self.channel.close()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            code = self.process.wait()
        self._stderr_file.close()
        return code, self.stderr_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def fake_engine() -> Iterator[FakeEngine]:
    engine = FakeEngine()
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def host(bin_dir: Path, fake_engine: FakeEngine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """One host for the module; on teardown it must end cleanly on SIGINT, as the engine expects."""
    folder = tmp_path_factory.mktemp("host")
    process = HostProcess(bin_dir, fake_engine.address, folder, folder / "host.stderr")
    yield process
    code, stderr = process.stop()
    assert code == 0, f"the host exited {code} on SIGINT:\n{stderr}"
    assert "Traceback" not in stderr, stderr

"""The installed Python language host, driven over gRPC as the Pulumi engine drives it."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
import zipfile
from concurrent import futures
from pathlib import Path
from typing import Any, Iterator, Optional

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc, language_pb2

from tests.conftest import REPO
from tests.tools.conftest import HostProcess
from tests.tools.fake_engine import FakeEngine

PROJECT_VENV = REPO / "venv"
POLICY_DIR = REPO / "policy"
MISBEHAVING_PACK = Path(__file__).resolve().parent / "misbehaving_pack"
TUNING_JOB = "pulumi-python:dynamic/vertex:TuningJob"
POLICY_NAME = "tuning-job-required-labels"
# Generous per-call deadline: a hung host fails the test instead of hanging the suite.
DEADLINE = 60


def pinned_version() -> str:
    match = re.search(r"github\.com/pulumi/pulumi/pkg/v3 v(\d+\.\d+\.\d+)", (REPO / "tools/pulumi/go.mod").read_text())
    assert match, "go.mod pins no pulumi/pkg/v3 version"
    return match.group(1)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def program_info(directory: Path, options: dict[str, Any], entry_point: str = ".") -> language_pb2.ProgramInfo:
    return language_pb2.ProgramInfo(root_directory=str(directory), program_directory=str(directory),
                                    entry_point=entry_point, options=struct(options))


def write_program(directory: Path, source: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.yaml").write_text("name: demo\nruntime:\n  name: python\n")
    (directory / "__main__.py").write_text(source)
    return directory


def run(host: HostProcess, engine: FakeEngine, directory: Path, *, dry_run: bool = False,
        config: Optional[dict[str, str]] = None, secret_keys: tuple[str, ...] = (),
        virtualenv: str = str(PROJECT_VENV), timeout: float = DEADLINE) -> language_pb2.RunResponse:
    request = language_pb2.RunRequest(
        project="demo", stack="dev", pwd=str(directory), program=str(directory), config=config or {},
        dryRun=dry_run, parallel=4, monitor_address=engine.address, configSecretKeys=list(secret_keys),
        info=program_info(directory, {"virtualenv": virtualenv}))
    return host.stub.Run(request, timeout=timeout)


def test_plugin_info_packages_and_about(host: HostProcess) -> None:
    assert host.stub.GetPluginInfo(empty_pb2.Empty(), timeout=DEADLINE).version == pinned_version()
    assert list(host.stub.GetRequiredPackages(language_pb2.GetRequiredPackagesRequest(), timeout=DEADLINE).packages) \
        == []
    assert list(host.stub.GetRequiredPlugins(language_pb2.GetRequiredPluginsRequest(), timeout=DEADLINE).plugins) == []
    about = host.stub.About(language_pb2.AboutRequest(info=program_info(REPO, {"virtualenv": str(PROJECT_VENV)})),
                            timeout=DEADLINE)
    assert about.executable == str(PROJECT_VENV / "bin" / "python")
    assert about.version.startswith("3.")


def test_run_passes_config_secrets_stack_and_virtualenv(host: HostProcess, fake_engine: FakeEngine,
                                                        tmp_path: Path) -> None:
    program = write_program(tmp_path / "program", """\
import json, os
from pathlib import Path
import pulumi

config = pulumi.Config()
greeting = config.require("greeting")

def record(token):
    Path("result.json").write_text(json.dumps({
        "greeting": greeting, "token": token, "stack": pulumi.get_stack(),
        "virtual_env": os.environ.get("VIRTUAL_ENV"), "token_is_secret": pulumi.runtime.is_config_secret("demo:token"),
        "secret_keys": json.loads(os.environ["PULUMI_CONFIG_SECRET_KEYS"]), "dry_run": pulumi.runtime.is_dry_run(),
    }))

config.require_secret("token").apply(record)
""")
    response = run(host, fake_engine, program, config={"demo:greeting": "hello", "demo:token": "s3cret"},
                   secret_keys=("demo:token",))
    assert response == language_pb2.RunResponse()
    result = json.loads((program / "result.json").read_text())
    assert result == {"greeting": "hello", "token": "s3cret", "stack": "dev", "virtual_env": str(PROJECT_VENV),
                      "token_is_secret": True, "secret_keys": ["demo:token"], "dry_run": False}


@pytest.mark.parametrize("dry_run", [True, False])
def test_run_passes_dry_run(host: HostProcess, fake_engine: FakeEngine, tmp_path: Path, dry_run: bool) -> None:
    program = write_program(tmp_path, "import pathlib, pulumi\n"
                                      "pathlib.Path('dry_run').write_text(str(pulumi.runtime.is_dry_run()))\n")
    assert run(host, fake_engine, program, dry_run=dry_run) == language_pb2.RunResponse()
    assert (program / "dry_run").read_text() == str(dry_run)


def test_run_error_is_a_non_zero_exit(host: HostProcess, fake_engine: FakeEngine, tmp_path: Path) -> None:
    marker = f"bad key {uuid.uuid4().hex}"
    program = write_program(tmp_path, f"import pulumi\nraise pulumi.RunError({marker!r})\n")
    response = run(host, fake_engine, program)
    assert response.error == "program exited with non-zero exit code: 1"
    assert not response.bail
    assert marker in fake_engine.messages()


def test_unhandled_exception_bails(host: HostProcess, fake_engine: FakeEngine, tmp_path: Path) -> None:
    marker = f"broken {uuid.uuid4().hex}"
    program = write_program(tmp_path, f"raise ValueError({marker!r})\n")
    response = run(host, fake_engine, program)
    # The runner already showed the traceback through the engine: bail, with no second error.
    assert response.bail and not response.error
    logged = [message for message in fake_engine.messages() if marker in message]
    assert len(logged) == 1 and "Traceback" in logged[0] and f"ValueError: {marker}" in logged[0]


def test_sys_exit_code_is_reported(host: HostProcess, fake_engine: FakeEngine, tmp_path: Path) -> None:
    program = write_program(tmp_path, "import sys\nsys.exit(7)\n")
    response = run(host, fake_engine, program)
    assert response.error == "program exited with non-zero exit code: 7"


def test_run_with_missing_virtualenv_names_it(host: HostProcess, fake_engine: FakeEngine, tmp_path: Path) -> None:
    program = write_program(tmp_path / "program", "raise SystemExit('must not run')\n")
    missing = tmp_path / "no-such-venv"
    response = run(host, fake_engine, program, virtualenv=str(missing))
    assert "virtualenv" in response.error and str(missing) in response.error
    assert not response.bail


def in_background(function, *args, **kwargs) -> futures.Future:
    """Call `function` on a daemon thread; the future re-raises what it raised."""
    future: futures.Future = futures.Future()

    def call() -> None:
        try:
            future.set_result(function(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to the test through the future
            future.set_exception(error)

    threading.Thread(target=call, daemon=True).start()
    return future


def process_exists(pid: int) -> bool:
    """True while /proc has the process, zombie included (its parent has not reaped it yet)."""
    return Path(f"/proc/{pid}").exists()


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def test_cancel_interrupts_a_running_program(host: HostProcess, fake_engine: FakeEngine, tmp_path: Path) -> None:
    started = tmp_path / "started"
    program_stderr = tmp_path / "program.stderr"
    # The program's own stderr goes to a file: the host's stderr must hold only the host's output, and the
    # file shows whether the program got SIGINT (KeyboardInterrupt) rather than only a SIGKILL.
    program = write_program(tmp_path / "program", f"""\
import os, pathlib, time
os.dup2(os.open({str(program_stderr)!r}, os.O_WRONLY | os.O_CREAT), 2)
pathlib.Path({str(started)!r}).write_text(str(os.getpid()))
time.sleep(60)
""")
    running = in_background(run, host, fake_engine, program, timeout=90)
    assert wait_until(lambda: started.exists() and started.read_text(), timeout=30), "the program never started"
    pid = int(started.read_text())
    cancelled_at = time.monotonic()
    host.stub.Cancel(empty_pb2.Empty(), timeout=DEADLINE)
    response = running.result(timeout=15)
    assert time.monotonic() - cancelled_at < 10
    # Python dies of an unhandled KeyboardInterrupt by re-raising SIGINT: the error names that signal.
    assert response.error == "program was stopped by signal SIGINT", response
    assert "KeyboardInterrupt" in program_stderr.read_text()
    assert not process_exists(pid)


def test_cancel_signals_every_program_at_once_then_kills(host: HostProcess, fake_engine: FakeEngine,
                                                         tmp_path: Path) -> None:
    # Two programs that survive SIGINT (they only note when it came): both must get it at once, not the
    # second one after the first has used up its grace period, and both then die by SIGKILL.
    programs = []
    for index in range(2):
        folder = tmp_path / f"program{index}"
        programs.append(write_program(folder, f"""\
import os, pathlib, signal, time
signal.signal(signal.SIGINT, lambda *_: pathlib.Path({str(folder / 'sigint')!r}).write_text(repr(time.time())))
pathlib.Path({str(folder / 'started')!r}).write_text(str(os.getpid()))
while True:
    time.sleep(0.1)
"""))
    running = [in_background(run, host, fake_engine, program, timeout=90) for program in programs]
    assert wait_until(lambda: all((program / "started").exists() for program in programs), timeout=30)
    cancelled_at = time.time()
    host.stub.Cancel(empty_pb2.Empty(), timeout=DEADLINE)
    assert wait_until(lambda: all((program / "sigint").exists() for program in programs), timeout=3), \
        "not every program got SIGINT right after Cancel"
    results = [future.result(timeout=20) for future in running]
    elapsed = time.time() - cancelled_at
    assert [result.error for result in results] == ["program was stopped by signal SIGKILL"] * 2
    assert 4 < elapsed < 10, f"expected the 5 s grace period, then SIGKILL; took {elapsed:.1f} s"
    for program in programs:
        assert not process_exists(int((program / "started").read_text()))


def make_wheel(folder: Path, name: str = "tinypkg", version: str = "0.1") -> Path:
    """A pure-Python wheel written by hand, so installing it needs no index and no network."""
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def install(host: HostProcess, project: Path, virtualenv: str) -> Iterator[language_pb2.InstallDependenciesResponse]:
    request = language_pb2.InstallDependenciesRequest(directory=str(project),
                                                      info=program_info(project, {"virtualenv": virtualenv}))
    return host.stub.InstallDependencies(request, timeout=120)


@pytest.fixture(scope="module")
def installed_project(host: HostProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A project whose requirements (a local wheel) the host installed into a venv it had to create."""
    project = tmp_path_factory.mktemp("install")
    wheel = make_wheel(project)
    # --no-index: the install must not depend on the network.
    (project / "requirements.txt").write_text(f"--no-index\n{wheel}\n")
    output = b"".join(chunk.stdout + chunk.stderr for chunk in install(host, project, "venv"))
    return project, output


def test_install_dependencies_creates_the_venv_and_installs(installed_project: tuple[Path, bytes]) -> None:
    project, output = installed_project
    assert b"Successfully installed tinypkg-0.1" in output  # pip's own output was streamed
    result = subprocess.run([str(project / "venv" / "bin" / "python"), "-c", "import tinypkg; print(tinypkg.VALUE)"],
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "42", result.stderr


def test_install_dependencies_failure_is_a_grpc_error(host: HostProcess, installed_project: tuple[Path, bytes],
                                                      tmp_path: Path) -> None:
    project, _ = installed_project
    (tmp_path / "requirements.txt").write_text(f"--no-index\n{tmp_path / 'missing-1.0-py3-none-any.whl'}\n")
    # The venv made by the other install: only pip itself can fail here.
    with pytest.raises(grpc.RpcError) as caught:
        for _ in install(host, tmp_path, str(project / "venv")):
            pass
    assert caught.value.code() not in (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED)
    assert "exited with code" in caught.value.details()


class PolicyPackStream:
    """One RunPlugin(kind=analyzer) stream of the policy pack, read in the background as the engine reads it."""

    def __init__(self, host: HostProcess, engine: FakeEngine, pack_dir: Path = POLICY_DIR,
                 virtualenv: str = "venv", env: tuple[str, ...] = ()) -> None:
        # A variable only this stream's pack gets, to find its process without guessing from command lines.
        self.marker = f"LANGUAGE_HOST_TEST={uuid.uuid4().hex}"
        self.pack_dir = pack_dir
        env = [f"PATH={os.environ['PATH']}", f"HOME={os.environ.get('HOME', '/tmp')}", self.marker, *env]
        request = language_pb2.RunPluginRequest(
            pwd=str(pack_dir), program=str(pack_dir), args=[engine.address], env=env, kind="analyzer",
            name=pack_dir.name, info=program_info(pack_dir, {"virtualenv": virtualenv}))
        self.call = host.stub.RunPlugin(request)
        self.responses: list[language_pb2.RunPluginResponse] = []
        self.error: Optional[grpc.RpcError] = None
        self._first: queue.Queue = queue.Queue()
        self.done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        first = self._first.get(timeout=DEADLINE)
        assert first is not None and first.stdout.strip().isdigit(), f"first message is not a port: {first}"
        self.port = int(first.stdout)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.analyzer = analyzer_pb2_grpc.AnalyzerStub(self.channel)

    def _read(self) -> None:
        try:
            for response in self.call:
                self.responses.append(response)
                if len(self.responses) == 1:
                    self._first.put(response)
        except grpc.RpcError as error:
            self.error = error
        finally:
            self._first.put(None)
            self.done.set()

    def configure(self, stack: str) -> None:
        self.analyzer.Handshake(analyzer_pb2.AnalyzerHandshakeRequest(
            engine_address="127.0.0.1:1", root_directory=str(self.pack_dir), program_directory=str(self.pack_dir)),
            timeout=DEADLINE)
        self.analyzer.ConfigureStack(analyzer_pb2.AnalyzerStackConfigureRequest(
            stack=stack, project="translation-tuning", config={"translation-tuning:region": "us-central1"}),
            timeout=DEADLINE)

    def analyze(self, labels: dict[str, str], name: str = "job") -> list[analyzer_pb2.AnalyzeDiagnostic]:
        request = analyzer_pb2.AnalyzeRequest(
            type=TUNING_JOB, name=name, urn=f"urn:pulumi:stack::translation-tuning::{TUNING_JOB}::{name}",
            properties=struct({"labels": labels}))
        return list(self.analyzer.Analyze(request, timeout=DEADLINE).diagnostics)

    def pack_pids(self) -> list[int]:
        """The live processes that got this stream's marker in their environment (the pack's)."""
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    environ = (entry / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if self.marker.encode() in environ:
                    pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()
        self.done.wait(timeout=DEADLINE)


@pytest.fixture
def policy_streams(host: HostProcess, fake_engine: FakeEngine) -> Iterator[list[PolicyPackStream]]:
    """Opens policy pack streams on demand (append) and cancels them all at the end, as the engine does."""
    streams: list[PolicyPackStream] = []
    yield streams
    for stream in streams:
        stream.close()


def open_stream(host: HostProcess, engine: FakeEngine, streams: list[PolicyPackStream]) -> PolicyPackStream:
    stream = PolicyPackStream(host, engine)
    streams.append(stream)
    return stream


def test_policy_pack_reports_violations_with_its_stack(host: HostProcess, fake_engine: FakeEngine,
                                                       policy_streams: list[PolicyPackStream]) -> None:
    stream = open_stream(host, fake_engine, policy_streams)
    stream.configure("alpha")
    assert stream.analyzer.GetPluginInfo(empty_pb2.Empty(), timeout=DEADLINE).version
    info = stream.analyzer.GetAnalyzerInfo(empty_pb2.Empty(), timeout=DEADLINE)
    assert POLICY_NAME in [policy.name for policy in info.policies]

    diagnostics = stream.analyze({"env": "dev"})
    assert len(diagnostics) == 1
    assert diagnostics[0].policyName == POLICY_NAME
    assert "(stack alpha)" in diagnostics[0].message and "team" in diagnostics[0].message
    assert stream.analyze({"env": "dev", "team": "nlp"}) == []


def test_cancelling_the_stream_stops_the_pack(host: HostProcess, fake_engine: FakeEngine,
                                              policy_streams: list[PolicyPackStream]) -> None:
    stream = open_stream(host, fake_engine, policy_streams)
    stream.configure("alpha")
    stream.analyzer.GetPluginInfo(empty_pb2.Empty(), timeout=DEADLINE)  # returns once the pack serves
    pids = stream.pack_pids()
    assert len(pids) == 1, f"expected one pack process, found {pids}"
    stream.close()
    # Gone from /proc altogether: stopped and reaped by the host, not left as a zombie.
    assert wait_until(lambda: not process_exists(pids[0]), timeout=10), f"pack process {pids[0]} outlived its stream"


def test_two_policy_packs_at_once_each_see_their_stack(host: HostProcess, fake_engine: FakeEngine,
                                                       policy_streams: list[PolicyPackStream]) -> None:
    alpha = open_stream(host, fake_engine, policy_streams)
    beta = open_stream(host, fake_engine, policy_streams)
    # Configured side by side, so each pack starts while the other stream is live.
    for configured in [in_background(alpha.configure, "alpha"), in_background(beta.configure, "beta")]:
        configured.result(timeout=DEADLINE)
    beta_diagnostics = beta.analyze({"team": "nlp"})
    alpha_diagnostics = alpha.analyze({"env": "dev"})
    assert len(alpha_diagnostics) == 1 and "(stack alpha)" in alpha_diagnostics[0].message \
        and "team" in alpha_diagnostics[0].message
    assert len(beta_diagnostics) == 1 and "(stack beta)" in beta_diagnostics[0].message \
        and "env" in beta_diagnostics[0].message
    # Two packs running at the same time, one per stream.
    alpha_pids, beta_pids = alpha.pack_pids(), beta.pack_pids()
    assert len(alpha_pids) == len(beta_pids) == 1 and alpha_pids != beta_pids
    assert not alpha.done.is_set() and not beta.done.is_set()


def test_stream_ends_with_the_exit_code_of_the_pack(host: HostProcess, fake_engine: FakeEngine,
                                                     policy_streams: list[PolicyPackStream]) -> None:
    stream = open_stream(host, fake_engine, policy_streams)
    stream.configure("alpha")
    stream.analyzer.GetPluginInfo(empty_pb2.Empty(), timeout=DEADLINE)
    # The engine's Cancel (Ctrl-C) stops every child of the host, the pack included; the pack then exits
    # by itself and the stream reports how.
    host.stub.Cancel(empty_pb2.Empty(), timeout=DEADLINE)
    assert stream.done.wait(timeout=15), "the stream did not end after its pack was stopped"
    assert stream.error is None, stream.error
    assert stream.responses[-1].WhichOneof("output") == "exitcode"
    assert stream.responses[-1].exitcode == 0  # pulumi_policy stops serving on SIGINT and exits normally


def test_stream_cancelled_before_configuration_ends_cleanly(host: HostProcess, fake_engine: FakeEngine) -> None:
    # More cancelled streams than the host has worker threads: a stream that kept its thread would
    # leave none for GetPluginInfo.
    for _ in range(40):
        stream = PolicyPackStream(host, fake_engine)
        stream.close()
        assert stream.done.is_set()
        assert stream.error is not None and stream.error.code() == grpc.StatusCode.CANCELLED
        assert stream.pack_pids() == []  # no pack was started for a stack never configured
    assert host.stub.GetPluginInfo(empty_pb2.Empty(), timeout=10).version == pinned_version()
    # The last stream's proxy stopped serving with it.
    assert wait_until(lambda: not _proxy_answers(stream.port), timeout=10)


def _proxy_answers(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            analyzer_pb2_grpc.AnalyzerStub(channel).Handshake(analyzer_pb2.AnalyzerHandshakeRequest(), timeout=2)
        except grpc.RpcError:
            return False
    return True


def misbehaving_stream(host: HostProcess, engine: FakeEngine, mode: str, ready: Path) -> PolicyPackStream:
    return PolicyPackStream(host, engine, MISBEHAVING_PACK, virtualenv=str(POLICY_DIR / "venv"),
                            env=(f"MISBEHAVE={mode}", f"MISBEHAVE_READY={ready}"))


def test_pack_printing_a_dead_port_fails_the_stream(host: HostProcess, fake_engine: FakeEngine,
                                                    policy_streams: list[PolicyPackStream], tmp_path: Path) -> None:
    stream = misbehaving_stream(host, fake_engine, "dead-port", tmp_path / "ready")
    policy_streams.append(stream)
    stream.configure("alpha")
    # The engine's next call must fail, not wait forever for a pack that will never answer.
    with pytest.raises(grpc.RpcError) as caught:
        stream.analyzer.GetPluginInfo(empty_pb2.Empty(), timeout=20)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert stream.done.wait(timeout=15), "the stream did not end after the pack failed to serve"
    assert b"policy pack configuration failed" in b"".join(response.stderr for response in stream.responses)
    assert stream.responses[-1].WhichOneof("output") == "exitcode"
    assert not process_exists(int((tmp_path / "ready").read_text()))


def test_stream_closed_while_the_pack_starts_ends_quietly(host: HostProcess, fake_engine: FakeEngine,
                                                          tmp_path: Path) -> None:
    stderr_before = len(host.stderr())
    ready = tmp_path / "ready"
    stream = misbehaving_stream(host, fake_engine, "port-on-sigint", ready)
    stream.configure("alpha")
    assert wait_until(ready.exists, timeout=30), "the pack never started"
    # Closing the stream stops the pack, which only then prints its port: the host must not attach to it.
    stream.close()
    assert wait_until(lambda: not process_exists(int(ready.read_text())), timeout=15)
    assert host.stub.GetPluginInfo(empty_pb2.Empty(), timeout=10).version == pinned_version()
    assert "Traceback" not in host.stderr()[stderr_before:]


def test_a_host_whose_engine_is_gone_stops_its_program_and_exits(bin_dir: Path, tmp_path: Path) -> None:
    # The engine killed without a word (SIGKILL, a lost CI runner) must not leave the host and its program
    # running as orphans.
    engine = FakeEngine()
    orphan = HostProcess(bin_dir, engine.address, tmp_path, tmp_path / "host.stderr")
    started = tmp_path / "started"
    program = write_program(tmp_path / "program", f"""\
import os, pathlib, time
pathlib.Path({str(started)!r}).write_text(str(os.getpid()))
time.sleep(120)
""")
    in_background(run, orphan, engine, program, timeout=150)
    assert wait_until(lambda: started.exists() and started.read_text(), timeout=30), "the program never started"
    pid = int(started.read_text())
    engine.stop()
    assert wait_until(lambda: orphan.process.poll() is not None, timeout=30), "the host outlived its engine"
    assert orphan.process.returncode == 0
    assert wait_until(lambda: not process_exists(pid), timeout=10), "the program outlived its host"
    # (The program's own KeyboardInterrupt may follow on the shared stderr: nobody is left to read it.)
    assert f"the engine at {engine.address} is gone; stopping" in orphan.stderr()

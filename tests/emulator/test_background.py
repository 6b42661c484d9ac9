"""The background emulator: real `python -m emulator` processes started, reused, shared, stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from emulator.background import PACKAGE_ROOT, BackgroundEmulator, main
from tests.conftest import REPO, emulator_pids
from tuning.errors import EmulatorError, TuningError


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emulator.background", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env)


def healthy(url: str) -> bool:
    return requests.get(f"{url}/_emulator/health", timeout=10).ok


def test_start_then_reuse_gives_the_same_url_and_process(background_project):
    first = BackgroundEmulator.for_project(background_project)
    url = first.ensure_running()
    pid = first.pid()
    assert url.startswith("http://127.0.0.1:") and healthy(url)
    assert first.run_dir == background_project.resolve() / ".run" / "emulator"
    assert (first.endpoint_file.read_text(), first.pid_file.read_text()) == (url, str(pid))

    again = BackgroundEmulator.for_project(background_project)
    assert (again.ensure_running(), again.pid()) == (url, pid)
    assert emulator_pids(first.data_dir) == [pid]


def test_two_processes_starting_at_once_share_one_emulator(background_project):
    starts = [subprocess.Popen([sys.executable, "-m", "emulator.background", "start", "--project-dir",
                                str(background_project)], cwd=REPO, stdout=subprocess.PIPE, text=True)
              for _ in range(2)]
    urls = [start.communicate(timeout=120)[0].strip() for start in starts]
    assert [start.returncode for start in starts] == [0, 0]
    assert urls[0] == urls[1] and healthy(urls[0])
    emulator = BackgroundEmulator.for_project(background_project)
    assert emulator_pids(emulator.data_dir) == [emulator.pid()]


def test_a_stale_pid_file_is_neither_reused_nor_killed(background_project, emulator):
    background = BackgroundEmulator.for_project(background_project)
    background.run_dir.mkdir(parents=True)
    stranger = subprocess.Popen(["sleep", "300"])
    try:
        # A pid that is not our emulator, next to the URL of a healthy emulator that is not ours either.
        background.pid_file.write_text(str(stranger.pid))
        background.endpoint_file.write_text(emulator.url)
        assert background.running_endpoint() is None

        url = background.ensure_running()
        assert url != emulator.url and background.pid() not in (None, stranger.pid)
        assert background.stop() is True

        background.pid_file.write_text(str(stranger.pid))
        assert background.stop() is False
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_stop_ends_the_emulator_and_a_second_stop_finds_none(background_project):
    background = BackgroundEmulator.for_project(background_project)
    url = background.ensure_running()
    assert background.stop() is True
    assert emulator_pids(background.data_dir) == []
    assert not background.pid_file.exists() and not background.endpoint_file.exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_emulator/health", timeout=5)
    assert background.stop() is False
    assert background.running_endpoint() is None


def test_an_emulator_killed_behind_our_back_is_replaced(background_project):
    background = BackgroundEmulator.for_project(background_project)
    background.ensure_running()
    killed = background.pid()
    os.killpg(killed, signal.SIGKILL)
    url = background.ensure_running()
    assert healthy(url) and background.pid() not in (None, killed)


def test_stop_on_a_project_that_never_ran_one_creates_nothing(tmp_path):
    assert BackgroundEmulator.for_project(tmp_path).stop() is False
    assert not (tmp_path / ".run").exists()


def test_a_failed_start_raises_the_project_error_naming_the_log(background_project, monkeypatch):
    # A real way to make `python -m emulator` exit at once: its settings reject this environment value.
    monkeypatch.setenv("TT_EMULATOR_MAX_JSON_BYTES", "not-a-number")
    background = BackgroundEmulator.for_project(background_project)
    with pytest.raises(EmulatorError, match="exited at start") as failed:
        background.ensure_running()
    assert isinstance(failed.value, TuningError)
    assert str(background.log_file) in str(failed.value)
    assert "max_json_bytes" in background.log_file.read_text()
    assert not background.pid_file.exists() and emulator_pids(background.data_dir) == []


def test_a_run_dir_that_cannot_be_created_raises_the_project_error(tmp_path):
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    with pytest.raises(EmulatorError, match="cannot run the emulator in"):
        BackgroundEmulator.for_project(not_a_folder).ensure_running()


def test_cli_status_start_status_stop(background_project):
    project = ["--project-dir", str(background_project)]
    assert (cli("status", *project).returncode, cli("status", *project).stdout) == (1, "no emulator is running\n")
    started = cli("start", *project)
    assert started.returncode == 0 and healthy(started.stdout.strip())
    status = cli("status", *project)
    assert (status.returncode, status.stdout) == (0, started.stdout)
    stopped = cli("stop", *project)
    assert (stopped.returncode, stopped.stdout) == (0, "emulator stopped\n")
    again = cli("stop", *project)
    assert (again.returncode, again.stdout) == (0, "no emulator was running\n")


def test_cli_start_failure_exits_1_naming_the_log(background_project):
    env = {**os.environ, "TT_EMULATOR_MAX_JSON_BYTES": "not-a-number"}
    failed = cli("start", "--project-dir", str(background_project), env=env)
    log_file = background_project.resolve() / ".run" / "emulator" / "emulator.log"
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith("error: the emulator exited at start") and str(log_file) in failed.stderr
    assert "Traceback" not in failed.stderr


def test_cli_defaults_to_the_repository_as_project(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "(default: this repository)" in " ".join(capsys.readouterr().out.split())
    assert PACKAGE_ROOT == REPO

"""Crashes and interruptions, with the real `pulumi` binary and real processes: a deploy killed while its job
trains, Ctrl-C during the wait for the job, and the emulator killed in the middle of training."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest
import requests

from emulator.background import BackgroundEmulator
from emulator.server import serve_in_thread
from tests.conftest import REPO, emulator_pids, emulator_settings, stop_background
from tests.e2e.cli import copy_project, make_project
from tests.e2e.test_activate import user_shell_env

LOCAL_LOCKS = Path(".pulumi-state/.pulumi/locks/organization/translation-tuning/local")
# Long enough to kill or interrupt mid-training (the first metrics come at step 10), short enough that the
# job, once adopted or restarted, ends in well under a minute.
TRAINING_ENV = {"TT_EMULATOR_TRAINING_STEPS": "40", "TT_EMULATOR_TRAINING_STEP_DELAY_SECONDS": "0.5"}
TIMEOUT = 600  # the machine is shared and busy: generous bounds everywhere
ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}


def wait_for(condition: Callable[[], object], what: str, timeout: float = TIMEOUT, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def processes_under(folder: Path) -> list[int]:
    """Live processes whose command line names something inside `folder` (providers, emulators, trainers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if str(folder).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def kill_leftovers(folder: Path) -> None:
    """SIGKILL the process groups of whatever still runs from `folder`.

    A deploy killed with SIGKILL leaves its dynamic-provider plugins running (the engine started each in a process
    group of its own and never got to end them); they would poll the emulator until their wait times out.
    """
    for pid in processes_under(folder):
        try:
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    """A clone's files (engine tooling, stacks, Makefile) with the venv linked; everything it started is ended."""
    project = copy_project(tmp_path / "clone")
    for name in ("Pulumi.local.yaml", "Makefile", "requirements.txt"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "tools", project / "tools")
    yield project
    stop_background(project)
    kill_leftovers(project)


def shell_env() -> dict[str, str]:
    return user_shell_env(**TRAINING_ENV)


def shell(project: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=project, env=shell_env(), capture_output=True, text=True,
                          timeout=TIMEOUT)


def activated(script: str) -> str:
    return f". tools/pulumi/activate && {script}"


def all_jobs(endpoint: str) -> list[dict]:
    return requests.get(f"{endpoint}/_emulator/v1/tuningJobs", timeout=30).json().get("tuningJobs", [])


def background_endpoint(project: Path) -> Optional[str]:
    return BackgroundEmulator.for_project(project).running_endpoint()


def running_job(endpoint: str) -> Optional[dict]:
    return next((job for job in all_jobs(endpoint) if job["state"] == "JOB_STATE_RUNNING"), None)


def has_metrics(endpoint: str, job: str) -> bool:
    response = requests.get(f"{endpoint}/_emulator/v1/{job}/metrics", timeout=30)
    return response.ok and bool(response.json()["latest"])


def outputs(project: Path) -> dict:
    result = shell(project, activated("pulumi stack output --json"))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def job_resource(project: Path) -> dict:
    """The TuningJob's outputs as the stack's state records them (`pulumi refresh` updates these; the stack's
    own outputs are the program's exports, which only the next `up` recomputes)."""
    result = shell(project, activated("pulumi stack export"))
    assert result.returncode == 0, result.stderr
    resources = json.loads(result.stdout)["deployment"]["resources"]
    return next(item["outputs"] for item in resources if item["type"] == "pulumi-python:dynamic/vertex:TuningJob")


def test_a_killed_up_leaves_a_lock_that_the_next_up_clears_then_adopts_the_job(clone):
    prepared = shell(clone, activated("pulumi stack select --create local"))
    assert prepared.returncode == 0, prepared.stderr
    # `pulumi up` waits for the job; the deploy is killed with its whole process group while it does.
    deploy = subprocess.Popen(["bash", "-c", activated("pulumi up --yes")], cwd=clone, env=shell_env(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        endpoint = wait_for(lambda: background_endpoint(clone), "the background emulator")
        job = wait_for(lambda: running_job(endpoint), "the job to run")
        lock = wait_for(lambda: list((clone / LOCAL_LOCKS).glob("*.json")), "the stack lock")[0]
        holder = json.loads(lock.read_text())["pid"]
    finally:
        os.killpg(deploy.pid, signal.SIGKILL)
        deploy.wait()
    assert lock.exists()  # what a killed deploy leaves behind

    # The same command again, and nothing else.
    again = shell(clone, activated("pulumi up --yes"))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-4000:]
    note = f"note: removed the lock of pulumi (pid {holder} on {socket.gethostname()}), which is no longer running"
    assert note in again.stderr.splitlines()
    assert f"adopted tuning job {job['name']} left by an interrupted earlier create" in again.stdout
    assert not list((clone / LOCAL_LOCKS).glob("*.json"))
    assert [listed["name"] for listed in all_jobs(endpoint)] == [job["name"]]
    stack = outputs(clone)
    assert stack["tuningJobName"] == job["name"]
    assert stack["state"] == "JOB_STATE_SUCCEEDED"


def test_sigint_during_the_wait_for_the_job_stops_cleanly_and_releases_the_lock(tmp_path):
    # The engine's Cancel reaches the provider (resources/provider_process.py): it stops waiting at once, far
    # inside completionTimeout.
    completion_timeout = 600
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        project = make_project(tmp_path, slow.url, completionTimeout=completion_timeout)
        try:
            log = tmp_path / "up.log"
            with open(log, "w") as output:
                deploy = subprocess.Popen(["pulumi", "up", "--yes", "--stack", project.stack, "--non-interactive"],
                                          cwd=project.dir, env=project.env, stdout=output,
                                          stderr=subprocess.STDOUT, start_new_session=True)
                try:
                    job = wait_for(lambda: running_job(slow.url), "the job to run")
                    time.sleep(2)  # well inside the provider's wait
                    os.kill(deploy.pid, signal.SIGINT)  # the pulumi process only, as Ctrl-C reaches it
                    interrupted = time.monotonic()
                    deploy.wait(timeout=120)
                    stopped_after = time.monotonic() - interrupted
                finally:
                    if deploy.poll() is None:
                        os.killpg(deploy.pid, signal.SIGKILL)
                        deploy.wait()
            text = log.read_text()
            assert deploy.returncode != 0
            assert "^C received; cancelling" in text
            assert f"interrupted: stopped waiting for tuning job {job['name']}, which keeps running" in text
            assert stopped_after < 30, f"up took {stopped_after:.0f}s to stop after SIGINT"
            assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-4000:]
            assert not list((tmp_path / "state" / ".pulumi" / "locks").rglob("*.json"))

            project.set_config("translation-tuning:completionTimeout", "5")  # provider-only: same job, short wait
            project.run("up", "--yes")
            assert [listed["name"] for listed in all_jobs(slow.url)] == [job["name"]]
            assert project.outputs()["tuningJobName"] == job["name"]
        finally:
            kill_leftovers(project.dir)


def test_ctrl_c_twice_terminates_and_the_next_up_adopts_or_keeps_the_one_job(tmp_path):
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=100000, step_delay_seconds=0.05)) as slow:
        project = make_project(tmp_path, slow.url, completionTimeout=300)
        try:
            deploy = subprocess.Popen(["pulumi", "up", "--yes", "--stack", project.stack, "--non-interactive"],
                                      cwd=project.dir, env=project.env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                job = wait_for(lambda: running_job(slow.url), "the job to run")
                time.sleep(2)
                os.kill(deploy.pid, signal.SIGINT)
                interrupted = time.monotonic()
                time.sleep(1)
                if deploy.poll() is None:
                    os.kill(deploy.pid, signal.SIGINT)  # "press ^C again": terminate at once
                text, _ = deploy.communicate(timeout=120)
                stopped_after = time.monotonic() - interrupted
            finally:
                if deploy.poll() is None:
                    os.killpg(deploy.pid, signal.SIGKILL)
                    deploy.wait()
            assert deploy.returncode != 0
            assert stopped_after < 60, f"up took {stopped_after:.0f}s to stop after Ctrl-C twice"
            # No assertion on tracebacks here: the language host answers the first Ctrl-C's Cancel with SIGINT to
            # the program, which prints its KeyboardInterrupt traceback if the terminate unblocks it within the
            # host's 5 s grace period (the single-Ctrl-C test above sees none, as the program is killed first).
            assert not list((tmp_path / "state" / ".pulumi" / "locks").rglob("*.json"))

            project.set_config("translation-tuning:completionTimeout", "5")  # provider-only: same job, short wait
            again = project.run("up", "--yes")
            if "^C received; terminating" in text:
                # The create was cut short (a pending create): the next up finds the job by its idempotency label.
                assert f"adopted tuning job {job['name']}" in again.stdout
            assert [listed["name"] for listed in all_jobs(slow.url)] == [job["name"]]
            assert project.outputs()["tuningJobName"] == job["name"]
        finally:
            kill_leftovers(project.dir)


def test_the_emulator_killed_mid_training_restarts_the_job_and_refresh_records_its_end(clone):
    prepared = shell(clone, activated("pulumi stack select --create local "
                                      "&& pulumi config set translation-tuning:waitForCompletion false "
                                      "&& pulumi up --yes"))
    assert prepared.returncode == 0, prepared.stdout[-4000:] + prepared.stderr[-4000:]
    job = outputs(clone)["tuningJobName"]
    background = BackgroundEmulator.for_project(clone)
    first = background.running_endpoint()
    wait_for(lambda: has_metrics(first, job), "the job's first metrics (training under way)")
    before = next(listed for listed in all_jobs(first) if listed["name"] == job)
    assert before["state"] == "JOB_STATE_RUNNING"

    os.kill(background.pid(), signal.SIGKILL)  # the server alone; its trainer dies with it
    wait_for(lambda: not emulator_pids(background.data_dir), "the emulator and its trainer to be gone")

    # refresh starts the project's emulator again on the same data dir; the interrupted job restarts.
    refreshed = shell(clone, activated("pulumi refresh --yes"))
    assert refreshed.returncode == 0, refreshed.stdout[-4000:] + refreshed.stderr[-4000:]
    second = background.running_endpoint()
    assert second and second != first
    assert f"tuning job {job.rsplit('/', 1)[-1]} was running when the emulator stopped; restarting it" in \
        background.log_file.read_text()
    assert job_resource(clone)["state"] in ("JOB_STATE_PENDING", "JOB_STATE_RUNNING")  # training again
    assert "Traceback" not in refreshed.stdout + refreshed.stderr

    # It does not stay RUNNING: it ends, and the next refresh records the end, its model and metrics.
    ended = wait_for(lambda: next((listed for listed in all_jobs(second)
                                   if listed["name"] == job and listed["state"] in ENDED), None), "the job to end")
    assert ended["state"] == "JOB_STATE_SUCCEEDED", ended
    assert ended["startTime"] > before["startTime"]  # trained again from scratch
    final = shell(clone, activated("pulumi refresh --yes"))
    assert final.returncode == 0, final.stdout[-4000:] + final.stderr[-4000:]
    recorded = job_resource(clone)
    assert recorded["state"] == "JOB_STATE_SUCCEEDED"
    assert recorded["tunedModelEndpointName"] == ended["tunedModel"]["endpoint"]
    assert len(recorded["metrics"]) == 6
    # The stack's outputs are the program's exports: a refresh that runs the program updates them too.
    rerun = shell(clone, activated("pulumi refresh --yes --run-program"))
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr[-4000:]
    assert outputs(clone)["state"] == "JOB_STATE_SUCCEEDED"
    assert [listed["name"] for listed in all_jobs(second)] == [job]

"""End to end as a user types it: `. tools/pulumi/activate`, then plain `pulumi` on the `local` stack with
the embedded emulator, and the `make` targets built on the same commands."""

from __future__ import annotations

import getpass
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.conftest import REPO, stop_background
from tests.e2e.cli import copy_project

# The background emulator inherits the engine's environment: train for seconds, not a minute.
FAST_TRAINING_ENV = {"TT_EMULATOR_TRAINING_D_MODEL": "16", "TT_EMULATOR_TRAINING_N_LAYERS": "1",
                     "TT_EMULATOR_TRAINING_N_HEADS": "2", "TT_EMULATOR_TRAINING_MAX_LEN": "96",
                     "TT_EMULATOR_TRAINING_STEPS": "30", "TT_EMULATOR_TRAINING_EVAL_EVERY": "10"}


def user_shell_env(**extra: str) -> dict[str, str]:
    """A user's environment: none of Pulumi's variables, the engine not on PATH."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PULUMI_", "PYTHONPATH", "VIRTUAL_ENV", "TT_"))}
    env.update(FAST_TRAINING_ENV)
    env.update(extra)
    return env


def shell(project: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script], cwd=project, env=user_shell_env(**env), capture_output=True,
                          text=True, timeout=600)


@pytest.fixture
def clone(tmp_path: Path):
    """The files a clone has (engine tooling, stacks, Makefile, policy), with the venv linked."""
    project = copy_project(tmp_path / "clone")
    for name in ("Pulumi.local.yaml", "Pulumi.dev.yaml", "Makefile", "requirements.txt"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "tools", project / "tools")
    (project / "policy").symlink_to(REPO / "policy")
    yield project
    stop_background(project)


def test_activate_then_plain_pulumi_tunes_the_local_stack(clone):
    up = shell(clone, ". tools/pulumi/activate && pulumi stack select --create local && pulumi up --yes "
                      "&& pulumi preview --expect-no-changes && pulumi stack output --json")
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    outputs = json.loads(up.stdout[up.stdout.rindex("\n{"):])
    assert outputs["state"] == "JOB_STATE_SUCCEEDED"
    assert len(outputs["metrics"]) == 6
    # The program started the emulator itself, and said where its console is.
    url = (clone / ".run" / "emulator" / "endpoint").read_text().strip()
    assert f"emulator console: {url}/" in up.stdout
    # State went to the project's own file backend; the committed stack file kept `embedded`.
    assert list((clone / ".pulumi-state").rglob("local.json"))
    assert "emulatorEndpoint: embedded" in (clone / "Pulumi.local.yaml").read_text()

    tried = shell(clone, 'make -s try PROMPT="English: Hello. Spanish:"')
    assert tried.returncode == 0, tried.stderr[-3000:]
    assert tried.stdout.strip()

    # A passphrase exported for a real stack does not break the local one.
    again = shell(clone, ". tools/pulumi/activate && pulumi preview --expect-no-changes",
                  PULUMI_CONFIG_PASSPHRASE="a-real-stack's-passphrase")
    assert again.returncode == 0, again.stdout[-3000:]

    destroyed = shell(clone, "make -s destroy && make -s emulator-stop")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-3000:]
    assert "emulator stopped" in destroyed.stdout


def test_a_real_stack_without_a_passphrase_stops_with_a_clear_message(clone):
    result = shell(clone, ". tools/pulumi/activate && pulumi preview --stack dev")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: stack 'dev' encrypts its secrets with a passphrase: export "
                                     "PULUMI_CONFIG_PASSPHRASE (or PULUMI_CONFIG_PASSPHRASE_FILE) first; only the "
                                     "local stack has a built-in one")
    assert not list((clone / ".pulumi-state").rglob("dev.json"))


def test_activate_sets_the_offline_environment_and_deactivate_restores_it(clone):
    script = (". tools/pulumi/activate && type -P pulumi python && env | grep -E '^PULUMI_' | sort "
              "&& pulumi_deactivate && echo \"after: $PATH\" && (type pulumi 2>&1 || true)")
    result = shell(clone, script, PULUMI_BACKEND_URL="gs://team-state")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("/bin/pulumi") and "translation-tuning/pulumi-v" in lines[0]
    assert lines[1] == str(clone / "venv" / "bin" / "python")
    assert "PULUMI_BACKEND_URL=gs://team-state" in lines  # an existing backend is kept
    assert f"PULUMI_HOME={clone / '.pulumi-home'}" in lines
    assert "PULUMI_SKIP_UPDATE_CHECK=true" in lines and "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true" in lines
    after = next(line for line in lines if line.startswith("after: "))
    assert after == "after: " + user_shell_env()["PATH"]
    assert "not found" in lines[-1]


def test_activate_before_the_engine_is_built_says_to_run_make_demo(clone, tmp_path):
    result = shell(clone, ". tools/pulumi/activate", XDG_CACHE_HOME=str(tmp_path / "empty-cache"),
                   PATH="/usr/bin:/bin")
    assert result.returncode == 1
    assert "the project's Pulumi engine is not built yet: run 'make demo'" in result.stderr


def load_stale_locks():
    """tools/pulumi/stale_locks.py, a script run by the activate script, imported as a module."""
    spec = importlib.util.spec_from_file_location("stale_locks", REPO / "tools" / "pulumi" / "stale_locks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


stale_locks = load_stale_locks()
LOCAL_LOCKS = Path(".pulumi-state/.pulumi/locks/organization/translation-tuning/local")


def write_lock(folder: Path, pid: int, hostname: str = "", timestamp: datetime | None = None) -> Path:
    """A lock file as the file backend writes one (JSON beside the blob library's `.attrs` file)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4()}.json"
    path.write_text(json.dumps({"pid": pid, "username": getpass.getuser(), "hostname": hostname or socket.gethostname(),
                                "timestamp": (timestamp or datetime.now(timezone.utc)).isoformat()}))
    path.with_name(path.name + ".attrs").write_text('{"user.content_type":"text/plain; charset=utf-8"}')
    return path


def dead_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def lock_of(pid: int, hostname: str = "", timestamp: datetime | None = None):
    return stale_locks.Lock(path=Path("unused.json"), pid=pid, username="someone",
                            hostname=hostname or socket.gethostname(),
                            timestamp=timestamp or datetime.now(timezone.utc))


def test_stale_lock_decision_removes_only_a_provably_dead_holder_on_this_host(tmp_path):
    host = stale_locks.Host.current()
    started = datetime.fromtimestamp(host.start_time(os.getpid()), timezone.utc)
    # Dead on this host: gone. Alive (this test, which started before its lock): kept.
    assert stale_locks.holder_is_gone(lock_of(dead_pid()), host)
    assert not stale_locks.holder_is_gone(lock_of(os.getpid(), timestamp=started + timedelta(seconds=1)), host)
    # Another host's lock is never judged from here, even when its pid is free on this one.
    assert not stale_locks.holder_is_gone(lock_of(dead_pid(), hostname="another-host"), host)
    # A pid reused by a process that started after the lock was taken: the holder is gone.
    assert stale_locks.holder_is_gone(lock_of(os.getpid(), timestamp=started - timedelta(minutes=5)), host)
    # ... unless that process is a `pulumi`: a clock stepped forward can make the real holder look younger.
    fake_pulumi = Path(shutil.copy("/bin/sleep", tmp_path / "pulumi"))
    with subprocess.Popen([str(fake_pulumi), "60"]) as other:
        try:
            assert not stale_locks.holder_is_gone(lock_of(other.pid, timestamp=started - timedelta(minutes=5)), host)
        finally:
            other.kill()
    # A zombie (ended, not yet reaped by its parent) holds nothing either.
    zombie = subprocess.Popen(["true"])
    deadline = time.monotonic() + 30
    while not (Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"):
        assert time.monotonic() < deadline, "the child never became a zombie"
        time.sleep(0.05)
    assert stale_locks.holder_is_gone(lock_of(zombie.pid), host)
    zombie.wait()


def test_stale_lock_files_are_found_per_stack_and_only_dead_ones_removed(tmp_path):
    state = tmp_path / "state"
    folder = state / ".pulumi" / "locks" / "organization" / "translation-tuning" / "local"
    dead, alive = write_lock(folder, dead_pid()), write_lock(folder, os.getpid())
    other_stack = write_lock(state / ".pulumi" / "locks" / "organization" / "translation-tuning" / "dev", dead_pid())
    assert stale_locks.state_dir(f"file://{state}?no_tmp_dir=true") == state
    assert stale_locks.state_dir("gs://team-state") is None
    paths = stale_locks.lock_files(state, "translation-tuning", "local")
    assert paths == sorted([dead, alive])
    removed = stale_locks.clear_stale_locks(paths, stale_locks.Host.current())
    assert [lock.path for lock in removed] == [dead]
    assert not dead.exists() and not dead.with_name(dead.name + ".attrs").exists()
    assert alive.exists() and other_stack.exists()


def test_activated_pulumi_clears_a_dead_holders_lock_and_keeps_live_or_foreign_ones(clone):
    selected = shell(clone, ". tools/pulumi/activate && pulumi stack select --create local")
    assert selected.returncode == 0, selected.stderr
    locks = clone / LOCAL_LOCKS
    # Destroy takes the lock (on an empty stack it runs nothing else): the cheapest such command.
    destroy = ". tools/pulumi/activate && pulumi destroy --yes"

    gone = dead_pid()
    stale = write_lock(locks, gone)
    cleared = shell(clone, destroy)
    assert cleared.returncode == 0, cleared.stdout[-3000:] + cleared.stderr[-3000:]
    assert (f"note: removed the lock of pulumi (pid {gone} on {socket.gethostname()}), which is no longer running"
            in cleared.stderr.splitlines())
    assert not stale.exists() and not list(locks.iterdir())

    with subprocess.Popen(["sleep", "600"]) as holder:
        try:
            time.sleep(0.1)  # the lock is taken after its holder started
            for holder_pid, hostname in ((holder.pid, ""), (dead_pid(), "another-host")):
                kept = write_lock(locks, holder_pid, hostname)
                blocked = shell(clone, destroy)
                assert blocked.returncode != 0
                assert "the stack is currently locked by 1 lock(s)" in blocked.stdout + blocked.stderr
                assert "note: removed" not in blocked.stderr
                assert kept.exists()
                for path in (kept, kept.with_name(kept.name + ".attrs")):
                    path.unlink()
        finally:
            holder.kill()

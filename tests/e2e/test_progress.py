"""End to end: a waiting `pulumi up` reports the job's progress as it goes and returns soon after the job ends."""

from __future__ import annotations

import subprocess
import time
from datetime import datetime
from pathlib import Path

import requests

from emulator.server import serve_in_thread
from tests.conftest import LOCATION, emulator_settings
from tests.e2e.cli import make_project

# What the engine adds between the provider's last poll and `up` returning: the closing metric read, state
# writes, the program's exit and the summary. Measured at 1-2 s on 2 shared cores.
ENGINE_FINISH_SECONDS = 5.0


def timestamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def up_with_timed_lines(project) -> tuple[list[tuple[float, str]], float, int]:
    """`pulumi up --yes`, reading its output as it comes: ([(time, line)], time it returned, exit code)."""
    process = subprocess.Popen(["pulumi", "up", "--yes", "--stack", project.stack, "--non-interactive"],
                               cwd=project.dir, env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, bufsize=1)
    lines = [(time.time(), line.rstrip()) for line in process.stdout]
    code = process.wait(timeout=600)
    return lines, time.time(), code


def test_a_waiting_up_logs_progress_and_notices_the_end_of_the_job_in_time(tmp_path: Path):
    # About 25 s of training: long enough for progress lines 10 s apart.
    with serve_in_thread(emulator_settings(tmp_path / "emulator", steps=200, eval_every=10,
                                           step_delay_seconds=0.1)) as served:
        project = make_project(tmp_path, served.url)
        lines, returned, code = up_with_timed_lines(project)
        assert code == 0, "\n".join(line for _, line in lines[-40:])
        job = requests.get(f"{served.url}/v1/projects/e2e-project/locations/{LOCATION}/tuningJobs",
                           timeout=30).json()["tuningJobs"][0]

    ended, elapsed = timestamp(job["endTime"]), timestamp(job["endTime"]) - timestamp(job["createTime"])
    # The engine prints each line as it comes, then again under "Diagnostics:" at the end: keep the live ones.
    live = lines[:next(index for index, (_, line) in enumerate(lines) if line.startswith("Diagnostics:"))]
    progress = [(at, line) for at, line in live if f"tuning job {job['name']}: " in line]
    running = [(at, line) for at, line in progress if ": RUNNING, step " in line]
    print("\n".join(line for _, line in progress))
    # Lines arrive while the job runs, not all at the end, and no more often than every 10 s.
    assert len(running) >= 2 and running[0][0] < ended
    assert len(running) <= elapsed / 10 + 2
    assert "train_total_loss" in running[-1][1] and "/200," in running[-1][1]
    final_at, final = progress[-1]
    assert ": SUCCEEDED, step 200/200, train_total_loss " in final
    # The end is noticed within max(2 s, 10% of the job's time) (plus the read of the final metrics).
    bound = max(2.0, 0.1 * elapsed)
    print(f"job {elapsed:.1f} s; end noticed after {final_at - ended:.1f} s (bound {bound:.1f} s); "
          f"up returned {returned - ended:.1f} s after the end")
    assert final_at - ended <= bound + 1.0
    assert returned - ended <= bound + ENGINE_FINISH_SECONDS

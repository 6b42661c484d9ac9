"""Benchmark: a no-op `pulumi preview` and `pulumi up` of the stack, against an empty program's.

    venv/bin/python bench/bench_noop.py [--runs 5]

Both projects run on the same pinned engine and language host, with the same venv, state backend kind
and environment: the baseline is a Python program that declares nothing (only the SDK's own start-up:
the language host, the official runner, the Stack resource). The measured one is a copy of this project
on a throwaway stack against an emulator started for the run, brought up once, then previewed and
updated with nothing to change. Prints the median wall time of each command and its ratio to the
baseline's (target: at most 1.5x), and writes them as JSON to bench/results/noop.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from emulator.server import serve_in_thread  # noqa: E402 - after the path setup above
from emulator.settings import EmulatorSettings, TrainingSettings  # noqa: E402
from tests.e2e.cli import PulumiProject, engine_env, make_project  # noqa: E402

TARGET_RATIO = 1.5
EMPTY_PROGRAM = "import pulumi  # declares nothing: the baseline\n"


def empty_project(folder: Path) -> PulumiProject:
    folder.mkdir(parents=True)
    (folder / "Pulumi.yaml").write_text("name: empty\nruntime:\n  name: python\n  options:\n    virtualenv: venv\n")
    (folder / "__main__.py").write_text(EMPTY_PROGRAM)
    (folder / "venv").symlink_to(REPO / "venv")
    (folder.parent / "empty-engine").mkdir()
    project = PulumiProject(folder, "bench", engine_env(folder.parent / "empty-engine"))
    subprocess.run(["pulumi", "stack", "init", "bench", "--non-interactive"], cwd=folder, env=project.env,
                   check=True, capture_output=True)
    project.run("up", "--yes")
    return project


def timed(project: PulumiProject, args: tuple[str, ...]) -> float:
    start = time.perf_counter()
    project.run(*args)
    return time.perf_counter() - start


def interleaved_medians(baseline: PulumiProject, stack: PulumiProject, args: tuple[str, ...],
                        runs: int) -> tuple[float, float]:
    """Median wall times of `pulumi ARGS` on both projects, run alternately so that the load of the shared
    machine at any moment hits both sides alike."""
    base_times, stack_times = [], []
    for _ in range(runs):
        base_times.append(timed(baseline, args))
        stack_times.append(timed(stack, args))
    return statistics.median(base_times), statistics.median(stack_times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each command (median reported)")
    args = parser.parse_args()
    commands = {"preview": ("preview", "--expect-no-changes"), "up": ("up", "--yes", "--expect-no-changes")}
    with tempfile.TemporaryDirectory(prefix="bench-noop-") as scratch:
        root = Path(scratch)
        fast = TrainingSettings(d_model=16, n_layers=1, n_heads=2, max_len=96, batch_size=8, steps=30, eval_every=10)
        with serve_in_thread(EmulatorSettings(host="127.0.0.1", port=0, data_dir=root / "emulator",
                                              training=fast)) as emulator:
            baseline = empty_project(root / "empty")
            stack = make_project(root / "stack", emulator.url, stack="bench")
            stack.run("up", "--yes")
            results, checks = {}, []
            for name, command in commands.items():
                base, measured = interleaved_medians(baseline, stack, command, args.runs)
                results[name] = {"baseline_s": round(base, 3), "stack_s": round(measured, 3),
                                 "ratio": round(measured / base, 2), "target": TARGET_RATIO}
                checks.append({"name": f"no-op `pulumi {' '.join(command)}` of the local stack",
                               "baseline": f"empty Python program {base:.2f} s", "measured": f"{measured:.2f} s",
                               "ratio": round(measured / base, 2), "target": f"<= {TARGET_RATIO}",
                               "ok": measured / base <= TARGET_RATIO})
                print(f"no-op {name:8s} empty program {base:6.2f} s   stack {measured:6.2f} s   "
                      f"ratio {measured / base:4.2f} (target <= {TARGET_RATIO})")
    out = REPO / "bench" / "results" / "noop.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmark": "noop", "machine": platform.platform(), "runs": args.runs,
                               "results": results, "checks": checks}, indent=2) + "\n")
    return 0 if all(result["ratio"] <= TARGET_RATIO for result in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Write bench/results.md from the JSON the benchmarks left in bench/results/, with a description of the machine.

    venv/bin/python bench/report.py

`make bench` runs every benchmark, then this. Each benchmark writes a "checks" list (name, baseline, measured,
ratio, target, ok); this script only lays them out, so every figure in results.md is one a benchmark measured.
Exits 1 when a check missed its target or a benchmark left no results.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
# In the order of bench/results.md; the file each benchmark writes and the command that gives it.
BENCHMARKS = (
    ("validate-small.json", "venv/bin/python bench/bench_validate.py --mode small"),
    ("validate-command.json", "venv/bin/python bench/bench_validate.py --mode command --size-mb 300"),
    ("validate-rate.json", "venv/bin/python bench/bench_validate.py --mode rate --size-mb 300"),
    ("noop.json", "venv/bin/python bench/bench_noop.py --runs 9"),
    ("emulator.json", "venv/bin/python bench/bench_emulator.py"),
    ("training.json", "venv/bin/python bench/bench_training.py"),
)


def machine() -> list[tuple[str, str]]:
    return [("CPU", _cpu_model()), ("cores", str(os.cpu_count())), ("RAM", _ram()),
            ("OS", platform.platform()), ("Python", platform.python_version()), ("Pulumi engine", _engine_version()),
            ("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 ** 2:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _engine_version() -> str:
    try:
        located = subprocess.run(["bash", str(REPO / "tools" / "pulumi" / "build.sh"), "--locate"], check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return subprocess.run([str(Path(located) / "pulumi"), "version"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError, IndexError):
        return "unknown"


def render() -> tuple[str, bool]:
    lines = ["# Benchmark results", "",
             "Written by `make bench` (`bench/report.py`) from `bench/results/*.json`. Every ratio is against a "
             "baseline measured in the same run; the machine is shared, so read the ratios rather than the "
             "absolute times.", "", "| machine | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in machine()]
    lines += ["", "| benchmark | baseline (same run) | measured | ratio | target | result |", "|---|---|---|---|---|---|"]
    all_ok, commands = True, []
    for file_name, command in BENCHMARKS:
        path = RESULTS / file_name
        if not path.exists():
            lines.append(f"| `{command}` | | no results | | | MISSING |")
            all_ok = False
            continue
        commands.append(command)
        for check in json.loads(path.read_text())["checks"]:
            ratio = "" if check["ratio"] is None else f"{check['ratio']:.2f}"
            lines.append(f"| {check['name']} | {check['baseline']} | {check['measured']} | {ratio} | "
                         f"{check['target']} | {'pass' if check['ok'] else 'FAIL'} |")
            all_ok = all_ok and check["ok"]
    lines += ["", "Commands (each also runs on its own):", ""] + [f"    {command}" for command in commands] + [""]
    return "\n".join(lines), all_ok


def main() -> int:
    text, ok = render()
    (REPO / "bench" / "results.md").write_text(text)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

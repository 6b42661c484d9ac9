"""Benchmark: dataset validator throughput and peak memory against a bare `orjson.loads` loop.

    venv/bin/python bench/bench_validate.py [--mode rate|command|small] [--size-mb 200] [--repeat 5] [--cache-dir DIR]

Three modes, each with its own targets (all checked against baselines measured in the same run):

* ``rate`` (default): the validator's rate and peak RSS, start-up excluded (below);
* ``command``: the whole ``python -m tuning validate FILE`` command, interpreter start-up included, against a
  whole bare ``orjson.loads`` loop process over the same file (``python -c ...``); median wall times of runs
  that alternate between the two; target: raw seconds / command seconds >= ``--min-command-ratio`` (0.6);
* ``small``: ``python -m tuning validate data/train.jsonl --validation data/validation.jsonl``: median wall
  time (target <= 0.3 s) and peak RSS (target <= 60 MB), with ``python -c pass`` as the start-up baseline;
  the command's ``-X importtime`` list must hold no cloud client (google.cloud, google.auth, requests, grpc).

Every mode writes its figures to bench/results/validate-MODE.json as well.

Generates (or reuses from the cache dir) a JSONL file of realistic English->Spanish examples built from
the sample sentences in data/, then runs, each in its own subprocess:

* raw:       ``for line in f: orjson.loads(line)``: the floor any JSONL reader pays;
* validate:  ``tuning.dataset.validate_file(path)``: parse, check, hash, count.

Rates are timed inside the children (interpreter start-up excluded); the best of `--repeat` runs counts.
Peak memory is each child's ``ru_maxrss`` from ``resource.getrusage(RUSAGE_CHILDREN)``, read by a small
launcher process that runs just that child (RUSAGE_CHILDREN is a maximum over all children waited for,
and a child inherits the RSS of the process it was forked from). Exits 1 if the validator is slower than ``--min-ratio`` x raw or its peak RSS
exceeds ``--max-memory-mb``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
SOURCES = (REPO / "data" / "train.jsonl", REPO / "data" / "validation.jsonl")
# Modules that mean "a cloud client was loaded"; `python -m tuning validate` must import none of them.
CLOUD_CLIENT_MODULES = ("google.cloud", "google.auth", "google.api_core", "requests", "grpc")
# The baseline of `--mode command`: the whole process that reads the file with nothing but orjson.
RAW_LOOP_PROGRAM = ("import sys, orjson\n"
                    "with open(sys.argv[1], 'rb') as stream:\n"
                    "    for line in stream:\n"
                    "        orjson.loads(line)\n")
GENERATOR_VERSION = 2  # bump when the generated content changes, to invalidate cached files
MB = 1_000_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=200, help="size of the generated file in MB (10^6 bytes)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per mode; the fastest counts")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "tuning-bench")
    parser.add_argument("--min-ratio", type=float, default=0.5, help="validator rate / raw rate target")
    parser.add_argument("--max-memory-mb", type=float, default=200, help="validator peak RSS target, MB")
    parser.add_argument("--mode", choices=("rate", "command", "small"), default="rate", help="what to measure")
    parser.add_argument("--min-command-ratio", type=float, default=0.6,
                        help="--mode command: raw loop process seconds / validate command seconds target")
    parser.add_argument("--max-small-seconds", type=float, default=0.3, help="--mode small: wall time target")
    parser.add_argument("--max-small-memory-mb", type=float, default=60, help="--mode small: peak RSS target")
    parser.add_argument("--child", choices=("raw", "validate"), help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.path)
    if args.mode == "small":
        return small_file(args)

    path = ensure_dataset(args.cache_dir, int(args.size_mb * MB), args.seed)
    if args.mode == "command":
        return whole_command(args, path)
    size = path.stat().st_size
    runs: dict[str, list[dict]] = {"raw": [], "validate": []}
    for _ in range(args.repeat):
        for mode in runs:  # alternate, so drift in machine load hits both modes alike
            runs[mode].append(_run_child(mode, path))

    best = {mode: min(results, key=lambda result: result["seconds"]) for mode, results in runs.items()}
    peak = {mode: max(result["maxrss"] for result in results) for mode, results in runs.items()}
    if best["validate"]["lines"] != best["raw"]["lines"] or not best["validate"]["ok"]:
        print(f"validator disagrees with the raw loop: {best}", file=sys.stderr)
        return 1
    lines = best["raw"]["lines"]
    ratio = best["raw"]["seconds"] / best["validate"]["seconds"]
    validator_mb = peak["validate"] / MB

    print(f"file: {path} ({size / MB:.1f} MB, {lines:,} lines, {size / lines:.0f} bytes/line)")
    print(f"best of {args.repeat} runs, each in a fresh subprocess")
    print(f"{'':18} {'lines/s':>12} {'MB/s':>8} {'seconds':>8} {'CPU s':>8} {'peak RSS':>10}")
    for mode, label in (("raw", "raw orjson loop"), ("validate", "validator")):
        seconds = best[mode]["seconds"]
        print(
            f"{label:18} {lines / seconds:12,.0f} {size / MB / seconds:8.1f} {seconds:8.3f} "
            f"{best[mode]['cpu']:8.3f} {peak[mode] / MB:7.1f} MB"
        )
    ratio_ok = ratio >= args.min_ratio
    memory_ok = validator_mb <= args.max_memory_mb
    write_results("rate", {"file_mb": round(size / MB, 1), "lines": lines, "runs": args.repeat, "checks": [
        check(f"validator rate, {size / MB:.0f} MB file (start-up excluded)",
              f"raw orjson loop {lines / best['raw']['seconds']:,.0f} lines/s",
              f"{lines / best['validate']['seconds']:,.0f} lines/s", ratio, f">= {args.min_ratio}", ratio_ok),
        check(f"validator peak RSS, {size / MB:.0f} MB file", f"raw loop {peak['raw'] / MB:.1f} MB",
              f"{validator_mb:.1f} MB", None, f"<= {args.max_memory_mb:g} MB", memory_ok),
    ]})
    print(f"throughput ratio validator/raw: {ratio:.2f}  (target >= {args.min_ratio})  {_verdict(ratio_ok)}")
    # For reading a noisy machine: CPU time is less sensitive to other load than wall time.
    print(f"CPU-time ratio validator/raw:   {best['raw']['cpu'] / best['validate']['cpu']:.2f}  (information only)")
    print(
        f"validator peak RSS: {validator_mb:.1f} MB, raw loop {peak['raw'] / MB:.1f} MB, "
        f"difference {(peak['validate'] - peak['raw']) / MB:+.1f} MB  (target <= {args.max_memory_mb:g} MB)  "
        f"{_verdict(memory_ok)}"
    )
    return 0 if ratio_ok and memory_ok else 1


def whole_command(args: argparse.Namespace, path: Path) -> int:
    """`python -m tuning validate FILE` against a bare orjson loop process, both timed from spawn to exit."""
    size = path.stat().st_size
    commands = {"raw": [sys.executable, "-c", RAW_LOOP_PROGRAM, str(path)],
                "validate": [sys.executable, "-m", "tuning", "validate", str(path)]}
    times: dict[str, list[float]] = {mode: [] for mode in commands}
    for _ in range(args.repeat):
        for mode, command in commands.items():  # alternate, so drift in machine load hits both alike
            times[mode].append(_timed_process(command))
    raw, validate = statistics.median(times["raw"]), statistics.median(times["validate"])
    ratio = raw / validate
    ok = ratio >= args.min_command_ratio
    print(f"file: {path} ({size / MB:.1f} MB); median of {args.repeat} runs each, alternating, start-up included")
    print(f"bare orjson.loads loop process: {raw:7.3f} s ({size / MB / raw:6.1f} MB/s)")
    print(f"python -m tuning validate:      {validate:7.3f} s ({size / MB / validate:6.1f} MB/s)")
    print(f"ratio raw/validate: {ratio:.2f}  (target >= {args.min_command_ratio})  {_verdict(ok)}")
    write_results("command", {"file_mb": round(size / MB, 1), "runs": args.repeat, "checks": [
        check(f"`python -m tuning validate` whole command, {size / MB:.0f} MB file (start-up included)",
              f"bare `orjson.loads` loop process {raw:.2f} s", f"{validate:.2f} s", ratio,
              f">= {args.min_command_ratio}", ok)]})
    return 0 if ok else 1


def small_file(args: argparse.Namespace) -> int:
    """The sample dataset through `python -m tuning validate`: wall time, peak RSS, and no cloud client loaded."""
    files = [str(SOURCES[0]), "--validation", str(SOURCES[1])]
    command = [sys.executable, "-m", "tuning", "validate", *files]
    startup = [sys.executable, "-c", "pass"]
    times: dict[str, list[float]] = {"startup": [], "validate": []}
    for _ in range(max(args.repeat, 5)):
        times["startup"].append(_timed_process(startup))
        times["validate"].append(_timed_process(command))
    startup_s, validate_s = statistics.median(times["startup"]), statistics.median(times["validate"])
    rss = {"startup": _peak_rss(startup), "validate": _peak_rss(command)}
    imported = subprocess.run([sys.executable, "-X", "importtime", *command[1:]], cwd=REPO, capture_output=True,
                              text=True, check=True).stderr
    modules = {line.rsplit("|", 1)[-1].strip() for line in imported.splitlines() if line.startswith("import time:")}
    clients = sorted(name for name in modules
                     if any(name == prefix or name.startswith(prefix + ".") for prefix in CLOUD_CLIENT_MODULES))
    time_ok = validate_s <= args.max_small_seconds
    memory_ok = rss["validate"] / MB <= args.max_small_memory_mb
    print(f"python -m tuning validate (data/train.jsonl, data/validation.jsonl): median of "
          f"{len(times['validate'])} runs, alternating with `python -c pass`")
    print(f"wall time: {validate_s:.3f} s (python -c pass: {startup_s:.3f} s)  (target <= {args.max_small_seconds} s)  "
          f"{_verdict(time_ok)}")
    print(f"peak RSS:  {rss['validate'] / MB:.1f} MB (python -c pass: {rss['startup'] / MB:.1f} MB)  "
          f"(target <= {args.max_small_memory_mb:g} MB)  {_verdict(memory_ok)}")
    print(f"cloud client modules imported: {', '.join(clients) if clients else 'none'}  {_verdict(not clients)}")
    write_results("small", {"modules_imported": len(modules), "cloud_client_modules": clients, "checks": [
        check("`python -m tuning validate` sample files, wall time", f"`python -c pass` {startup_s:.3f} s",
              f"{validate_s:.3f} s", None, f"<= {args.max_small_seconds} s", time_ok),
        check("`python -m tuning validate` sample files, peak RSS", f"`python -c pass` {rss['startup'] / MB:.1f} MB",
              f"{rss['validate'] / MB:.1f} MB", None, f"<= {args.max_small_memory_mb:g} MB", memory_ok),
        check("`python -m tuning validate` imports a cloud client", "", ", ".join(clients) or "none", None, "none",
              not clients),
    ]})
    return 0 if time_ok and memory_ok and not clients else 1


def check(name: str, baseline: str, measured: str, ratio: float | None, target: str, ok: bool) -> dict:
    """One row of bench/results.md."""
    return {"name": name, "baseline": baseline, "measured": measured,
            "ratio": round(ratio, 2) if ratio is not None else None, "target": target, "ok": ok}


def write_results(mode: str, report: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"validate-{mode}.json").write_text(json.dumps({"benchmark": f"validate-{mode}", **report}, indent=2)
                                                   + "\n")


def _timed_process(command: list[str]) -> float:
    """Wall seconds of `command` from spawn to exit (output discarded)."""
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def _peak_rss(command: list[str]) -> int:
    """Peak RSS of `command` in bytes, through the small launcher (see `_LAUNCHER`)."""
    completed = subprocess.run([sys.executable, "-c", _LAUNCHER_ANY_EXIT, *command], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, check=True)
    return int(completed.stdout.splitlines()[-1]) * (1 if sys.platform == "darwin" else 1024)


def ensure_dataset(cache_dir: Path, size: int, seed: int) -> Path:
    """Return a generated JSONL file of at least `size` bytes, generating it unless cached.

    The cache key covers size, seed, generator version and the sample data the sentences come from.
    """
    sources = hashlib.sha256(b"".join(path.read_bytes() for path in SOURCES)).hexdigest()[:12]
    path = cache_dir / f"bench-{size // 1000}kb-seed{seed}-v{GENERATOR_VERSION}-{sources}.jsonl"
    if path.exists():
        print(f"reusing {path}", file=sys.stderr)
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {path} ...", file=sys.stderr)
    started = time.perf_counter()
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        _generate(out, size, seed)
    partial.replace(path)  # atomic: an interrupted run never leaves a short file under the final name
    print(f"generated in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return path


def _generate(out: io.BufferedWriter, size: int, seed: int) -> None:
    """Write examples until `size` bytes: 1-3 sample sentences per turn; 2% of examples have two exchanges.

    This mixes the short sentences of the sample set into the lengths of real translation data (single
    sentences to short paragraphs) in the documented single-exchange format. The few multi-turn examples
    keep the validator's general path in the measurement.
    """
    import orjson

    sys.path.insert(0, str(REPO))
    from tuning.dataset import example_pairs, iter_examples

    pairs: list[tuple[str, str]] = []
    for source in SOURCES:
        with open(source, "rb") as stream:
            for _, turns in iter_examples(stream):
                prompt, answer = example_pairs(turns)
                pairs.append((prompt.removeprefix("English: ").removesuffix(" Spanish:"), answer))
    rng = random.Random(seed)
    written = 0
    buffer: list[bytes] = []
    while written < size:
        contents = []
        for _ in range(2 if rng.random() < 0.02 else 1):
            chosen = rng.choices(pairs, k=rng.choice((1, 1, 2, 3)))
            english = " ".join(en for en, _ in chosen)
            spanish = " ".join(es for _, es in chosen)
            contents.append({"role": "user", "parts": [{"text": f"English: {english} Spanish:"}]})
            contents.append({"role": "model", "parts": [{"text": spanish}]})
        line = orjson.dumps({"contents": contents}) + b"\n"
        buffer.append(line)
        written += len(line)
        if len(buffer) >= 10_000:
            out.write(b"".join(buffer))
            buffer.clear()
    out.write(b"".join(buffer))


# Runs the measured child and prints its peak RSS. A process inherits ru_maxrss from the process that forked
# it (the pages it shared before exec count), so the child is forked from this small interpreter rather than
# from the bench, whose RSS grows while it generates data.
_LAUNCHER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


# The same, for a command whose output is not ours to read and whose exit status may be non-zero.
_LAUNCHER_ANY_EXIT = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _run_child(mode: str, path: Path) -> dict:
    """Run one measurement in a fresh interpreter; return its JSON result plus its peak RSS in bytes."""
    child = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(path)]
    completed = subprocess.run(
        [sys.executable, "-c", _LAUNCHER, *child],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    result_line, maxrss_line = completed.stdout.splitlines()
    result = json.loads(result_line)
    # Linux reports ru_maxrss in KiB, macOS in bytes.
    result["maxrss"] = int(maxrss_line) * (1 if sys.platform == "darwin" else 1024)
    return result


def _child(mode: str, path: Path) -> int:
    """The measured work. Imports happen before the clock starts."""
    import orjson

    from tuning.dataset import validate_file

    if mode == "raw":
        loads = orjson.loads
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        with open(path, "rb") as stream:
            for line in stream:  # exactly the baseline loop: no counting inside the timed part
                loads(line)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
        lines, ok = _count_lines(path), True
    else:
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        report = validate_file(path)
        seconds, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_started
        lines, ok = report.example_count, report.ok
    print(json.dumps({"mode": mode, "seconds": seconds, "cpu": cpu, "lines": lines, "ok": ok}))
    return 0


def _cpu_seconds() -> float:
    """CPU time of this process, all threads (the validator hashes in a second thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            lines += block.count(b"\n")
    return lines


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: dataset validator throughput and peak memory against a bare `orjson.loads` loop.

    venv/bin/python bench/bench_validate.py [--size-mb 200] [--repeat 3] [--cache-dir DIR]

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
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCES = (REPO / "data" / "train.jsonl", REPO / "data" / "validation.jsonl")
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
    parser.add_argument("--child", choices=("raw", "validate"), help=argparse.SUPPRESS)
    parser.add_argument("path", nargs="?", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(args.child, args.path)

    path = ensure_dataset(args.cache_dir, int(args.size_mb * MB), args.seed)
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
    print(f"throughput ratio validator/raw: {ratio:.2f}  (target >= {args.min_ratio})  {_verdict(ratio_ok)}")
    # For reading a noisy machine: CPU time is less sensitive to other load than wall time.
    print(f"CPU-time ratio validator/raw:   {best['raw']['cpu'] / best['validate']['cpu']:.2f}  (information only)")
    print(
        f"validator peak RSS: {validator_mb:.1f} MB, raw loop {peak['raw'] / MB:.1f} MB, "
        f"difference {(peak['validate'] - peak['raw']) / MB:+.1f} MB  (target <= {args.max_memory_mb:g} MB)  "
        f"{_verdict(memory_ok)}"
    )
    return 0 if ratio_ok and memory_ok else 1


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

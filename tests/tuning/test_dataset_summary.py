"""Tests of `python -m tuning dataset-summary`: the figures per file, the comparison with a git ref, the
stack's files, and the line counting that rides along with the streaming validator."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tuning import dataset
from tuning.dataset_summary import summarize_file, summarize_stream

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"


def row(i: int) -> bytes:
    example = {"contents": [{"role": "user", "parts": [{"text": f"English: Line {i}. Spanish:"}]},
                            {"role": "model", "parts": [{"text": f"Línea {i}."}]}]}
    return orjson.dumps(example) + b"\n"


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository holding the project's Pulumi files and small datasets, committed once."""
    shutil.copy(REPO / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    shutil.copy(REPO / "Pulumi.dev.yaml", tmp_path / "Pulumi.dev.yaml")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_bytes(b"".join(row(i) for i in range(120)))
    (tmp_path / "data" / "validation.jsonl").write_bytes(b"".join(row(i) for i in range(1000, 1010)))
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "base")
    return tmp_path


def summary(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tuning", "dataset-summary", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def table_rows(markdown: str, header: str) -> list[list[str]]:
    """The cells of the data rows of the table whose header row starts with `header`."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def test_each_file_gets_examples_tokens_bytes_hash_and_verdict_from_the_validator():
    result = summary(REPO, "data/train.jsonl", "--validation", "data/validation.jsonl")

    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout, "| dataset | file |")
    for cells, (path, kind) in zip(rows, [("data/train.jsonl", "training"), ("data/validation.jsonl", "validation")],
                                   strict=True):
        report = dataset.validate_file(REPO / path, kind=kind)
        content = (REPO / path).read_bytes()
        assert cells == [kind, f"`{path}`", f"{report.example_count:,}",
                         f"{-(-report.total_characters // 4):,}", f"{len(content):,}",
                         f"`{hashlib.sha256(content).hexdigest()}`", "ok"]
    assert rows[0][2] == "230" and rows[1][2] == "60"
    assert result.stdout.startswith("### Datasets\n")
    assert "#### Changes" not in result.stdout  # no --base-ref, no comparison


def test_changes_against_the_base_count_examples_added_and_removed_and_show_both_hashes(project):
    train = project / "data" / "train.jsonl"
    before = train.read_bytes()
    lines = before.splitlines(keepends=True)
    # Remove two examples, edit one (one removed, one added), add three new ones.
    lines = lines[2:]
    lines[5] = row(5000)
    train.write_bytes(b"".join(lines) + row(6000) + row(6001) + row(6002))

    result = summary(project, "--stack", "dev", "--base-ref", "HEAD")

    assert result.returncode == 0, result.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project, capture_output=True, text=True).stdout
    assert f"#### Changes against `HEAD` (`{head[:12]}`)" in result.stdout
    training, validation = table_rows(result.stdout, "| dataset | file | examples before")
    old, new = hashlib.sha256(before).hexdigest(), hashlib.sha256(train.read_bytes()).hexdigest()
    assert training == ["training", "`data/train.jsonl`", "120 → 121", "+4", "−3", f"`{old[:12]}` → `{new[:12]}`"]
    validation_hash = hashlib.sha256((project / "data" / "validation.jsonl").read_bytes()).hexdigest()
    assert validation == ["validation", "`data/validation.jsonl`", "10 (same)", "+0", "−0",
                          f"unchanged `{validation_hash[:12]}`"]


def test_reordered_examples_are_neither_added_nor_removed(project):
    train = project / "data" / "train.jsonl"
    train.write_bytes(b"".join(reversed(train.read_bytes().splitlines(keepends=True))))

    result = summary(project, "data/train.jsonl", "--base-ref", "HEAD")

    ((_, _, counts, added, removed, hashes),) = table_rows(result.stdout, "| dataset | file | examples before")
    assert (counts, added, removed) == ("120 (same)", "+0", "−0")
    assert " → " in hashes  # the bytes, and so the hash, did change


def test_a_file_the_base_does_not_have_is_new(project):
    (project / "data" / "extra.jsonl").write_bytes(row(1) + row(2))

    result = summary(project, "--validation", "data/extra.jsonl", "--base-ref", "HEAD")

    assert result.returncode == 0, result.stderr
    ((_, _, counts, added, removed, hashes),) = table_rows(result.stdout, "| dataset | file | examples before")
    assert (counts, added, removed) == ("new file → 2", "+2", "−0")
    assert hashes.startswith("new file → `")


def test_the_stack_names_its_files_with_the_project_defaults_and_empty_means_none(project):
    (project / "Pulumi.dev.yaml").write_text(
        "config:\n  translation-tuning:trainingDataset: data/validation.jsonl\n"
        "  translation-tuning:validationDataset: ''\n")
    (project / "Pulumi.other.yaml").write_text("config:\n  gcp:project: p\n")

    named = summary(project, "--stack", "dev")
    defaults = summary(project, "--stack", "other")

    assert [cells[:2] for cells in table_rows(named.stdout, "| dataset | file |")] == \
        [["training", "`data/validation.jsonl`"]]
    assert [cells[:2] for cells in table_rows(defaults.stdout, "| dataset | file |")] == \
        [["training", "`data/train.jsonl`"], ["validation", "`data/validation.jsonl`"]]
    assert named.stdout.startswith("### Datasets of stack `dev`\n")


def test_a_broken_dataset_is_reported_not_fatal(project):
    train = project / "data" / "train.jsonl"
    train.write_bytes(train.read_bytes() + b'{"contents": []}\n')

    result = summary(project, "data/train.jsonl", "--base-ref", "HEAD")

    assert result.returncode == 0
    assert table_rows(result.stdout, "| dataset | file |")[0][-1] == "❌ 1 problem"
    assert "- ❌ `data/train.jsonl:121: contents: must not be empty`" in result.stdout


def test_an_unknown_ref_or_stack_is_one_error_line_and_exit_1(project):
    bad_ref = summary(project, "data/train.jsonl", "--base-ref", "no-such-branch")
    bad_stack = summary(project, "--stack", "staging")

    assert (bad_ref.returncode, bad_ref.stdout) == (1, "")
    assert bad_ref.stderr == "error: --base-ref no-such-branch: not a commit in this repository (fetch it first?)\n"
    assert (bad_stack.returncode, bad_stack.stdout) == (1, "")
    assert bad_stack.stderr == "error: Pulumi.staging.yaml: not found (run from the project directory)\n"


def test_no_file_and_no_stack_is_a_usage_error():
    result = summary(REPO)

    assert result.returncode == 2
    assert "give at least one FILE, --validation FILE or --stack NAME" in result.stderr


def test_line_counts_match_the_lines_whatever_the_block_boundaries(monkeypatch):
    monkeypatch.setattr(dataset, "READ_BLOCK_BYTES", 7)  # lines span many blocks
    content = row(1) + b"\n" + row(2) + b"  \r\n" + row(1) + row(3).rstrip(b"\n")  # blank line, no final newline

    result = summarize_stream(io.BytesIO(content), name="x.jsonl", kind="training")

    expected = Counter(hashlib.blake2b(line, digest_size=16).digest()
                       for line in content.split(b"\n") if line.strip())
    assert result.lines == expected
    assert sorted(result.lines.values()) == [1, 1, 2]
    assert result.report.sha256 == hashlib.sha256(content).hexdigest()
    assert result.report.problems[0].rule == "blank line (one JSON example per line)"


def test_a_missing_file_gets_the_validators_report():
    result = summarize_file("no/such.jsonl", kind="training")

    assert str(result.report.problems[0]) == "no/such.jsonl:0: file not found"
    assert result.lines == Counter()

"""Tests of `python -m tuning validate`: output lines and exit status, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tuning.__main__ import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuning", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def write_pairs(path: Path, count: int) -> Path:
    rows = [
        {"contents": [{"role": "user", "parts": [{"text": f"English: Line {i}. Spanish:"}]}, {"role": "model", "parts": [{"text": f"Línea {i}."}]}]}
        for i in range(count)
    ]
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def test_valid_files_exit_0_with_a_summary_per_file():
    result = run("validate", "data/train.jsonl", "--validation", "data/validation.jsonl")

    assert result.returncode == 0
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "data/train.jsonl: 230 examples, 43 KB, max 39 tokens/example, ok",
        "data/validation.jsonl: 60 validation examples, 11 KB, max 34 tokens/example, ok",
    ]


def test_problems_go_to_stdout_one_per_line_and_exit_1():
    result = run("validate", "data/invalid/wrong_role_order.jsonl", "data/invalid/bad_json_line3.jsonl")

    assert result.returncode == 1
    assert result.stdout.splitlines() == [
        'data/invalid/wrong_role_order.jsonl:2: contents[1].role: expected "model" after "user", got "user"',
        "data/invalid/bad_json_line3.jsonl:3: invalid JSON (unexpected end of data at column 116)",
    ]


def test_summary_counts_the_problems():
    result = run("validate", "data/invalid/empty_text.jsonl")

    assert "data/invalid/empty_text.jsonl: 2 examples, 258 B, max 11 tokens/example, 1 problem" in result.stderr


def test_one_invalid_file_among_valid_ones_exits_1():
    result = run("validate", "data/train.jsonl", "data/invalid/empty_text.jsonl")

    assert result.returncode == 1
    assert result.stdout == "data/invalid/empty_text.jsonl:2: contents[1].parts[0].text: must not be empty or whitespace only\n"


def test_warnings_go_to_stderr_and_keep_exit_0(tmp_path: Path):
    path = write_pairs(tmp_path / "small.jsonl", 3)

    result = run("validate", str(path))

    assert result.returncode == 0
    assert result.stdout == ""
    assert f"warning: {path}: only 3 training examples; Vertex recommends at least 100 (100-500 or more)" in (
        result.stderr.splitlines()
    )


def test_missing_file_is_a_problem_with_exit_1():
    result = run("validate", "data/no-such-file.jsonl")

    assert result.returncode == 1
    assert result.stdout == "data/no-such-file.jsonl:0: file not found\n"
    assert result.stderr == "data/no-such-file.jsonl: 1 problem\n"


def test_problems_past_the_cap_are_summed_up_in_one_line(tmp_path: Path):
    path = tmp_path / "broken.jsonl"
    path.write_bytes(b"{\n" * 105)

    result = run("validate", str(path))

    lines = result.stdout.splitlines()
    assert result.returncode == 1
    assert len(lines) == 101
    assert lines[-2] == f"{path}:100: invalid JSON (unexpected end of data at column 2)"
    assert lines[-1] == f"{path}: ... and 5 more problems"
    assert f"{path}: 105 examples, 210 B, max 0 tokens/example, 105 problems" in result.stderr


def test_validation_file_is_checked_as_validation(tmp_path: Path):
    path = write_pairs(tmp_path / "validation.jsonl", 1025)

    result = run("validate", "--validation", str(path))

    assert result.returncode == 1
    assert result.stdout == f"{path}:1025: validation set has 1,025 examples; the limit is 1,024\n"


def test_file_after_validation_option_is_a_training_file(tmp_path: Path):
    small = write_pairs(tmp_path / "small.jsonl", 3)

    result = run("validate", "data/train.jsonl", "--validation", "data/validation.jsonl", str(small))

    assert result.returncode == 0
    assert f"{small}: 3 examples," in result.stderr  # "examples", not "validation examples"


def test_validate_without_files_is_a_usage_error():
    result = run("validate")

    assert result.returncode == 2
    assert "validate: give at least one FILE or --validation FILE" in result.stderr


def test_missing_command_is_a_usage_error():
    result = run()

    assert result.returncode == 2
    assert "the following arguments are required: COMMAND" in result.stderr


def test_unknown_option_is_a_usage_error():
    result = run("validate", "data/train.jsonl", "--strict")

    assert result.returncode == 2
    assert "unrecognized arguments: --strict" in result.stderr


def test_main_returns_the_exit_status(capsys: pytest.CaptureFixture[str]):
    status = main(["validate", str(REPO / "data" / "invalid" / "empty_text.jsonl")])

    assert status == 1
    assert ":2: contents[1].parts[0].text: must not be empty or whitespace only" in capsys.readouterr().out


def test_build_parser_has_the_validate_command():
    args = build_parser().parse_args(["validate", "a.jsonl", "--validation", "v.jsonl"])

    assert (args.command, args.files, args.validation) == ("validate", ["a.jsonl"], ["v.jsonl"])


def test_validate_loads_no_cloud_client():
    # A pre-commit hook runs `validate` on every commit: the Google clients take a second and 100 MB to load.
    script = ("import sys; from tuning.__main__ import main; code = main(['validate', sys.argv[1]]); "
              "print(sorted(m for m in sys.modules if m.startswith(('google.cloud.', 'google.api_core', 'grpc', 'pulumi'))))")
    result = subprocess.run([sys.executable, "-c", script, str(REPO / "data" / "validation.jsonl")], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --- evaluation-gate ---------------------------------------------------------------------------------------

EVALUATION = {"examples": 60, "tuned": {"bleu": 31.2, "chrf": 55.5}, "base": {"bleu": 0.4, "chrf": 18.0},
              "samples": []}


def gate(tmp_path: Path, evaluation: object, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "evaluation.json"
    path.write_text(orjson.dumps(evaluation).decode())
    return run("evaluation-gate", str(path), *args)


def test_the_gate_passes_an_evaluation_at_the_prod_stacks_threshold_and_prints_the_scores(tmp_path):
    result = gate(tmp_path, EVALUATION, "--stack", "prod")  # Pulumi.prod.yaml: minChrf "50"
    assert (result.returncode, result.stderr) == (0, "")
    assert "| tuned | 55.5 | 31.2 |" in result.stdout and "60 evaluation examples; minChrf 50." in result.stdout


@pytest.mark.parametrize(("evaluation", "args", "errors"), [
    (EVALUATION, ("--min-chrf", "60"), ["error: tuned chrF 55.5 is below minChrf 60 on 60 evaluation examples"]),
    ({**EVALUATION, "base": {"bleu": 40.0, "chrf": 55.5}}, (),
     ["error: tuned chrF 55.5 does not beat the base model's 55.5"]),
    (None, ("--stack", "dev"),
     ["error: no evaluation recorded (the stack has no evaluation set, or its job has not succeeded yet)"]),
], ids=["below-threshold", "no-better-than-base", "none-recorded"])
def test_the_gate_stops_promotion_with_one_line_per_reason(tmp_path, evaluation, args, errors):
    result = gate(tmp_path, evaluation, *args)
    assert (result.returncode, result.stderr.splitlines()) == (1, errors)


def test_the_gate_names_an_unreadable_file(tmp_path):
    result = run("evaluation-gate", str(tmp_path / "missing.json"))
    assert result.returncode == 1 and result.stderr.startswith(f"error: {tmp_path / 'missing.json'}: ")

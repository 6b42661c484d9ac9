"""Command line: ``python -m tuning validate train.jsonl --validation validation.jsonl``.

Exit status: 0 when every file is valid (warnings allowed), 1 when a file breaks a rule, 2 on a usage error.
``python -m tuning dataset-summary`` prints a Markdown summary of dataset files (and of their changes against
a git ref); it exits 0 whatever the files hold, 1 when it cannot read a ref or a stack file.
The API commands (`jobs`, `generate`) live in `tuning.api_commands`; they exit 1 on an API error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from tuning import dataset, dataset_summary
from tuning.api_commands import add_api_commands
from tuning.dataset import DatasetKind
from tuning.errors import ConfigError

EXIT_OK = 0
EXIT_PROBLEMS = 1  # usage errors exit 2, from argparse


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subcommand per action; each sets `handler(args) -> exit status`.

    Returns:
        The top-level parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m tuning",
        description="Tools for tuning translation-llm-002 on Vertex AI.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check dataset files against the translation-llm-002 rules",
        description=(
            "Check JSONL datasets against the translation-llm-002 rules. Problems go to stdout, one "
            "'file:line: field: rule' per line; warnings and a summary per file go to stderr."
        ),
    )
    validate.add_argument("files", nargs="*", metavar="FILE", help="training dataset (JSONL)")
    validate.add_argument(
        "--validation",
        action="append",
        default=[],
        metavar="FILE",
        help="validation dataset (JSONL); repeat for several",
    )
    validate.set_defaults(handler=_validate)

    summary = commands.add_parser(
        "dataset-summary",
        help="Markdown summary of dataset files and of their changes against a git ref",
        description=(
            "Print a Markdown summary of dataset files: examples, estimated tokens (characters / 4), bytes, "
            "SHA-256 and rule check; with --base-ref, the examples added and removed and the hashes before "
            "and after, reading the base version with 'git show REF:PATH'. Exits 0 whatever the files hold."
        ),
    )
    summary.add_argument("files", nargs="*", metavar="FILE", help="training dataset (JSONL)")
    summary.add_argument("--validation", action="append", default=[], metavar="FILE",
                         help="validation dataset (JSONL); repeat for several")
    summary.add_argument("--stack", metavar="NAME",
                         help="also the stack's trainingDataset and validationDataset (from Pulumi.NAME.yaml, "
                              "defaults from Pulumi.yaml); run from the project directory")
    summary.add_argument("--base-ref", metavar="REF", help="git ref to compare with, e.g. origin/main or HEAD^1")
    summary.set_defaults(handler=_dataset_summary)

    gate = commands.add_parser(
        "evaluation-gate",
        help="check a stack's `evaluation` output before promoting to the next environment",
        description=(
            "Read an `evaluation` stack output (the JSON of `pulumi stack output evaluation --json`) and exit 0 "
            "when it allows promotion: it exists, its tuned chrF is at least the threshold (--min-chrf, or "
            "minChrf of --stack from its stack file), and it beats the base model's. Otherwise exit 1 with one "
            "'error:' line per reason. Prints a Markdown table of the scores either way."
        ),
    )
    gate.add_argument("file", metavar="FILE", help="the evaluation output as JSON ('-' for stdin)")
    threshold = gate.add_mutually_exclusive_group()
    threshold.add_argument("--min-chrf", type=float, metavar="N", help="lowest tuned chrF that passes")
    threshold.add_argument("--stack", metavar="NAME", help="use minChrf of this stack (Pulumi.NAME.yaml)")
    gate.set_defaults(handler=_evaluation_gate)
    add_api_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns:
        The exit status.
    """
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    # argparse stops filling a positional list at the first option, so in `validate a --validation v b`
    # the `b` comes back unparsed; it is a training FILE like `a`.
    if args.command in ("validate", "dataset-summary") and rest and not any(arg.startswith("-") for arg in rest):
        args.files.extend(rest)
        rest = []
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "validate" and not args.files and not args.validation:
        parser.error("validate: give at least one FILE or --validation FILE")
    if args.command == "dataset-summary" and not args.files and not args.validation and not args.stack:
        parser.error("dataset-summary: give at least one FILE, --validation FILE or --stack NAME")
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def _validate(args: argparse.Namespace) -> int:
    """Problems to stdout (one per line, for grep and editors), warnings and summaries to stderr."""
    out, err = sys.stdout, sys.stderr
    jobs: list[tuple[str, DatasetKind]] = [(path, "training") for path in args.files]
    jobs += [(path, "validation") for path in args.validation]
    status = EXIT_OK
    for path, kind in jobs:
        report = dataset.validate_file(path, kind=kind)
        for problem in report.problems:
            print(problem, file=out)
        if report.omitted_problems:
            print(f"{report.path}: ... and {report.omitted_problems} more problems", file=out)
        for warning in report.warnings:
            print(f"warning: {warning}", file=err)
        print(_summary(report), file=err)
        if not report.ok:
            status = EXIT_PROBLEMS
    return status


def _dataset_summary(args: argparse.Namespace) -> int:
    """The Markdown to stdout; an unreadable ref or stack file is one `error:` line on stderr."""
    try:
        files: list[tuple[str, DatasetKind]] = [(path, "training") for path in args.files]
        files += [(path, "validation") for path in args.validation]
        if args.stack:
            files += dataset_summary.stack_datasets(args.stack)
        title = f"Datasets of stack `{args.stack}`" if args.stack else "Datasets"
        text = dataset_summary.render(files, title=title, base_ref=args.base_ref)
    except (dataset_summary.SummaryError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    sys.stdout.write(text)
    return EXIT_OK


def _evaluation_gate(args: argparse.Namespace) -> int:
    """Scores as Markdown to stdout; reasons not to promote as `error:` lines on stderr."""
    import json

    from tuning.evaluation import promotion_problems
    from tuning.stack_files import stack_value

    try:
        text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
        evaluation = json.loads(text) if text.strip() else None
        min_chrf = args.min_chrf or 0.0
        if args.stack:
            key, value = stack_value(args.stack, "minChrf")
            try:
                min_chrf = float(value or 0)
            except ValueError:
                raise ConfigError(key, f"expected a number, got {value!r} in Pulumi.{args.stack}.yaml") from None
    except (OSError, ValueError) as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_PROBLEMS
    if isinstance(evaluation, dict) and isinstance(evaluation.get("tuned"), dict):
        print(f"| model | chrF | BLEU |\n|---|---|---|\n"
              f"| tuned | {evaluation['tuned']['chrf']} | {evaluation['tuned']['bleu']} |\n"
              f"| base | {evaluation['base']['chrf']} | {evaluation['base']['bleu']} |\n\n"
              f"{int(evaluation['examples'])} evaluation examples; minChrf {min_chrf:g}.")
    problems = promotion_problems(evaluation, min_chrf)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return EXIT_PROBLEMS if problems else EXIT_OK


def _summary(report: dataset.DatasetReport) -> str:
    """``train.jsonl: 250 examples, 41 KB, max 52 tokens/example, ok``, or the number of problems."""
    count = report.problem_count
    verdict = "ok" if report.ok else f"{count} problem{'' if count == 1 else 's'}"
    if not report.sha256:  # not read: missing, unreadable or too large
        return f"{report.path}: {verdict}"
    examples = f"{report.example_count} {'validation ' if report.kind == 'validation' else ''}examples"
    return (
        f"{report.path}: {examples}, {_format_size(report.bytes)}, "
        f"max {report.max_example_tokens} tokens/example, {verdict}"
    )


def _format_size(size: int) -> str:
    """Decimal units, as `ls --si` prints them: 1 KB = 1,000 bytes."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


if __name__ == "__main__":
    sys.exit(main())

"""A Markdown summary of dataset files, and of what changed in them against a git ref.

``python -m tuning dataset-summary --stack dev --base-ref HEAD^1`` (the pull-request workflow appends it to
``$GITHUB_STEP_SUMMARY``). For each file: examples, estimated tokens, bytes, SHA-256 and whether it follows
the rules, all from one pass of the streaming validator (:func:`tuning.dataset.validate_stream`, so tokens
are characters / 4 over the valid examples, as everywhere in the project). With a base ref, the file as it
is in that ref is read the same way, streamed from ``git show REF:./PATH``, and the two are compared:
examples before and after, examples added and removed, and the hashes before and after.

Examples are compared line by line, byte for byte: an edited line counts as one removed and one added
example, and moving lines around changes nothing. The comparison keeps one 16-byte digest per distinct
line of each version, so its memory grows with the number of examples (about 100 bytes each); the
validation itself stays in constant memory.

The summary reports; it does not gate. A file that breaks a rule is shown as such and the command still
exits 0: `python -m tuning validate` and `pulumi preview` are the gates.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from tuning import dataset
from tuning.dataset import ByteStream, DatasetKind, DatasetReport
from tuning.errors import ConfigError, TuningError
from tuning.stack_files import stack_value

# Problems and warnings listed per file; the rest are counted.
MAX_LISTED = 5
SHORT_HASH = 12


class SummaryError(TuningError):
    """The summary cannot be made: an unknown git ref, git failing, an unreadable stack file."""


@dataclass(frozen=True)
class DatasetSummary:
    """One version of one dataset file: the validator's report and a digest count of its example lines."""

    report: DatasetReport
    lines: Counter[bytes] = field(default_factory=Counter)

    @property
    def estimated_tokens(self) -> int:
        return dataset.estimate_tokens(self.report.total_characters)


@dataclass(frozen=True)
class Change:
    """A file at the base ref (None: not there) and now."""

    base: DatasetSummary | None
    head: DatasetSummary

    @property
    def added(self) -> int:
        base = self.base.lines if self.base else Counter()
        return sum((self.head.lines - base).values())

    @property
    def removed(self) -> int:
        base = self.base.lines if self.base else Counter()
        return sum((base - self.head.lines).values())


class _CountingLines:
    """Wraps a binary stream; as the validator reads through it, counts each non-blank line by digest.

    Each line is hashed as its pieces arrive, so a long line is never held in memory.
    """

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self.counts: Counter[bytes] = Counter()
        self._line = hashlib.blake2b(digest_size=16)
        self._open = False  # bytes of the current line have been seen
        self._blank = True  # ... and all of them are whitespace

    def read(self, size: int = -1) -> bytes:
        block = self._stream.read(size)
        if not block:
            if self._open:  # a last line without a newline
                self._end_line()
            return block
        *complete, rest = block.split(b"\n")
        for piece in complete:
            self._add(piece)
            self._end_line()
        if rest:
            self._add(rest)
        return block

    def _add(self, piece: bytes) -> None:
        self._line.update(piece)
        self._open = True
        if self._blank and piece.strip():
            self._blank = False

    def _end_line(self) -> None:
        if not self._blank:
            self.counts[self._line.digest()] += 1
        self._line = hashlib.blake2b(digest_size=16)
        self._open, self._blank = False, True


def summarize_stream(stream: ByteStream, *, name: str, kind: DatasetKind) -> DatasetSummary:
    """Validate a stream in one pass, counting its example lines on the way."""
    counting = _CountingLines(stream)
    report = dataset.validate_stream(counting, name=name, kind=kind)
    return DatasetSummary(report, counting.counts)


def summarize_file(path: str, *, kind: DatasetKind) -> DatasetSummary:
    """The summary of a file on disk; a missing, unreadable or oversized one gets the validator's report."""
    try:
        handle = open(path, "rb")
    except OSError:
        return DatasetSummary(dataset.validate_file(path, kind=kind))
    with handle:
        if os.fstat(handle.fileno()).st_size > dataset.MAX_FILE_BYTES:
            return DatasetSummary(dataset.validate_file(path, kind=kind))
        return summarize_stream(handle, name=path, kind=kind)


def resolve_ref(ref: str) -> str:
    """The commit a ref names, as a full hash.

    Raises:
        SummaryError: not a commit in this repository (or not a git repository).
    """
    result = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if result.returncode != 0:
        raise SummaryError(f"--base-ref {ref}: not a commit in this repository (fetch it first?)")
    return result.stdout.decode().strip()


def summarize_at_ref(commit: str, path: str, *, kind: DatasetKind) -> DatasetSummary | None:
    """The summary of a file as it is in a commit, streamed from `git show`; None when it is not there.

    Raises:
        SummaryError: git failed while reading the file.
    """
    spec = f"{commit}:{_git_path(path)}"
    if _git("cat-file", "-e", spec).returncode != 0:
        return None
    with subprocess.Popen(["git", "show", spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as show:
        assert show.stdout is not None and show.stderr is not None
        summary = summarize_stream(show.stdout, name=path, kind=kind)
        show.stdout.read()  # never stop git on a full pipe, whatever the validator read
        error = show.stderr.read().decode(errors="replace").strip()
    if show.returncode != 0:
        raise SummaryError(f"git show {spec} failed: {error}")
    return summary


def stack_datasets(stack: str) -> list[tuple[str, DatasetKind]]:
    """The training and validation files a stack uses, from Pulumi.yaml's defaults and Pulumi.STACK.yaml.

    Run from the project directory. An empty validationDataset means none, as in the program.

    Raises:
        ConfigError: a stack file is missing or a dataset key is not a string.
    """
    files: list[tuple[str, DatasetKind]] = []
    keys: tuple[tuple[str, DatasetKind], ...] = (("trainingDataset", "training"), ("validationDataset", "validation"))
    for key, kind in keys:
        full_key, value = stack_value(stack, key)
        value = "" if value is None else value
        if not isinstance(value, str):
            raise ConfigError(full_key, f"expected a file path (string) in Pulumi.{stack}.yaml, got {value!r}")
        if value:
            files.append((value, kind))
    return files


def render(files: Sequence[tuple[str, DatasetKind]], *, title: str, base_ref: str | None = None) -> str:
    """The Markdown summary of the files, compared with `base_ref` when given.

    Raises:
        SummaryError: the ref is unknown, or git failed.
    """
    heads = [summarize_file(path, kind=kind) for path, kind in files]
    lines = [f"### {title}", ""]
    lines += [
        "| dataset | file | examples | est. tokens | bytes | SHA-256 | rules |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    for summary in heads:
        report = summary.report
        lines.append(
            f"| {report.kind} | {_code(report.path)} | {report.example_count:,} | {summary.estimated_tokens:,} "
            f"| {report.bytes:,} | {_code(report.sha256) if report.sha256 else 'not read'} | {_verdict(report)} |"
        )
    notes = [note for summary in heads for note in _notes(summary.report)]
    if notes:
        lines += [""] + notes
    lines.append("")
    lines.append(f"Tokens are estimated as characters / {dataset.CHARS_PER_TOKEN} over the valid examples.")
    if base_ref is not None:
        commit = resolve_ref(base_ref)
        changes = [Change(summarize_at_ref(commit, summary.report.path, kind=summary.report.kind), summary)
                   for summary in heads]
        lines += ["", f"#### Changes against {_code(base_ref)} ({_code(commit[:SHORT_HASH])})", ""]
        lines += [
            "| dataset | file | examples before → after | added | removed | SHA-256 before → after |",
            "|---|---|--:|--:|--:|---|",
        ]
        for change in changes:
            lines.append(_change_row(change))
        lines += ["", "Examples are compared line by line: an edited line counts as one removed and one added."]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------
# Internals


def _change_row(change: Change) -> str:
    head = change.head.report
    after = head.example_count
    if change.base is None:
        counts, hashes = f"new file → {after:,}", f"new file → {_short(head.sha256)}"
    else:
        base = change.base.report
        before = base.example_count
        counts = f"{before:,} → {after:,}" if before != after else f"{after:,} (same)"
        if base.sha256 == head.sha256:
            hashes = f"unchanged {_short(head.sha256)}"
        else:
            hashes = f"{_short(base.sha256)} → {_short(head.sha256)}"
    return f"| {head.kind} | {_code(head.path)} | {counts} | +{change.added:,} | −{change.removed:,} | {hashes} |"


def _verdict(report: DatasetReport) -> str:
    if report.ok:
        return "ok" if not report.warnings else f"ok, {len(report.warnings)} warning{_s(len(report.warnings))}"
    return f"❌ {report.problem_count:,} problem{_s(report.problem_count)}"


def _notes(report: DatasetReport) -> list[str]:
    """Bullet lines: the first problems and the warnings of a file."""
    notes = [f"- ❌ {_code(str(problem))}" for problem in report.problems[:MAX_LISTED]]
    if report.problem_count > MAX_LISTED:
        notes.append(f"- ... and {report.problem_count - MAX_LISTED:,} more problems in {_code(report.path)} "
                     f"(`python -m tuning validate` lists them)")
    notes += [f"- ⚠️ {_code(warning)}" for warning in report.warnings[:MAX_LISTED]]
    return notes


def _short(sha256: str) -> str:
    return _code(sha256[:SHORT_HASH]) if sha256 else "not read"


def _code(text: str) -> str:
    """Text as an inline code span that cannot break the table or the Markdown around it."""
    text = text.replace("`", "'").replace("|", "\\|").replace("\n", " ").replace("\r", " ")
    return f"`{text}`"


def _s(count: int) -> str:
    return "" if count == 1 else "s"


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise SummaryError("git is not installed") from exc


def _git_path(path: str) -> str:
    """`./relative` (git resolves it against the working directory), also for an absolute path inside it."""
    relative = os.path.relpath(path) if os.path.isabs(path) else path
    return relative if relative.startswith("./") else f"./{relative}"

"""Streaming validator for translation-llm-002 tuning datasets (JSON Lines, one example per line).

The rules come from the Vertex AI pages on translation tuning (prepare, about; see the README):

* Each line is one JSON object whose only key is ``contents``: a non-empty list of turns
  ``{"role": "user" | "model", "parts": [{"text": "..."}, ...]}``. Roles alternate user, model, user, ...,
  starting with ``user`` and ending with ``model`` (the translation the model learns to produce).
* Text only: a part holds exactly one non-blank ``text``; ``inlineData``, ``fileData`` and the other Gemini
  part kinds are rejected, and so is ``systemInstruction``, which is documented for Gemini only.
* At most 1,000 tokens per example (input + output), estimated by :func:`estimate_tokens`.
* A validation file holds at most 1,024 examples; a training file under 100 examples gets a warning.
* A file is at most 1 GiB (:data:`MAX_FILE_BYTES`).

Blank lines are errors: Vertex reads one example per line, and a blank line is not an example.

One pass reads the file in binary blocks, hashes the raw bytes with SHA-256 (in a worker thread, overlapping
the parsing) and counts them, so the caller gets the content hash without a second read. Memory stays
constant: two blocks, one line (lines longer than :data:`MAX_LINE_BYTES` are reported, not buffered) and at
most :data:`MAX_PROBLEMS` problems. Each line reports its first problem only.

Speed: each line costs one ``orjson.loads`` and straight-line checks of the usual shape; only unusual or
broken lines reach the slower code that names the problem. bench/bench_validate.py measures the rate
against a bare ``orjson.loads`` loop.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol, Sequence, cast

import orjson

from tuning.errors import DatasetError

DatasetKind = Literal["training", "validation"]


class ByteStream(Protocol):
    """What the validator reads: a binary file, a pipe, or a wrapper of one that returns bytes from `read`."""

    def read(self, size: int = -1, /) -> bytes: ...


# orjson.loads, also given the None that stands for an overlong line: it then raises JSONDecodeError too, which
# the loops below rely on to keep a test out of their hot path (see `_LineReader`).
_loads_line = cast(Callable[[bytes | None], Any], orjson.loads)
DATASET_KINDS: tuple[str, ...] = ("training", "validation")

# The docs say "up to 1 GB"; we read that as 1 GiB, the larger of the two readings, so we never reject a file
# Vertex would accept. Module attributes (not defaults) so tests can monkeypatch them.
MAX_FILE_BYTES = 1024**3
MAX_EXAMPLE_TOKENS = 1_000
MAX_VALIDATION_EXAMPLES = 1_024
RECOMMENDED_MIN_TRAINING_EXAMPLES = 100
# The docs equate 1,000 tokens with about 4,000 characters.
CHARS_PER_TOKEN = 4
# Problems kept in a report; later ones are only counted (`DatasetReport.omitted_problems`).
MAX_PROBLEMS = 100
# A valid example has at most ~4,000 characters of text; even fully \u-escaped that is well under 100 KB.
# Longer lines are reported without being held in memory, which keeps memory constant on hostile input.
MAX_LINE_BYTES = 1024**2
READ_BLOCK_BYTES = 1024**2

MODEL_NAME = "translation-llm-002"
ROLES = ("user", "model")
# Gemini part kinds that carry something other than text; named in the error so the fix is obvious.
NON_TEXT_PARTS = frozenset(
    {
        "inlineData",
        "inline_data",
        "fileData",
        "file_data",
        "functionCall",
        "function_call",
        "functionResponse",
        "function_response",
        "executableCode",
        "executable_code",
        "codeExecutionResult",
        "code_execution_result",
        "videoMetadata",
        "video_metadata",
    }
)
UNSUPPORTED_TOP_LEVEL_KEYS = frozenset({"systemInstruction", "system_instruction"})


@dataclass(frozen=True)
class Problem:
    """One broken rule: where (file, 1-based line, field path such as ``contents[1].role``) and which rule.

    Line 0 means the file as a whole (missing, too large, empty).
    """

    file: str
    line: int
    field: str | None
    rule: str

    def __str__(self) -> str:
        if self.field is None:
            return f"{self.file}:{self.line}: {self.rule}"
        return f"{self.file}:{self.line}: {self.field}: {self.rule}"


@dataclass(frozen=True)
class DatasetReport:
    """The outcome of validating one dataset file.

    Attributes:
        path: The file name used in problems (as given by the caller).
        kind: ``"training"`` or ``"validation"``.
        example_count: Non-blank lines, valid or not (each one is meant to be an example).
        bytes: Bytes read (for a file rejected by size before reading: its size).
        sha256: Hex SHA-256 of the bytes read; ``""`` when the file was not read.
        max_example_tokens: Largest token estimate among valid examples.
        total_characters: Text characters summed over valid examples.
        problems: The first :data:`MAX_PROBLEMS` problems, in line order.
        warnings: Advice that does not make the file invalid.
        omitted_problems: Problems found after the cap and therefore not listed.
    """

    path: str
    kind: DatasetKind
    example_count: int
    bytes: int
    sha256: str
    max_example_tokens: int
    total_characters: int
    problems: list[Problem]
    warnings: list[str]
    omitted_problems: int = 0

    @property
    def ok(self) -> bool:
        """True when the file breaks no rule (warnings allowed)."""
        return not self.problems

    @property
    def problem_count(self) -> int:
        """All problems found, listed or not."""
        return len(self.problems) + self.omitted_problems

    def raise_for_problems(self) -> None:
        """Raise if the file breaks any rule.

        Raises:
            DatasetError: with one ``file:line: field: rule`` entry per listed problem; the ones
                past the cap are counted in its `omitted`.
        """
        if self.problems:
            raise DatasetError([str(problem) for problem in self.problems], omitted=self.omitted_problems)


def estimate_tokens(text_or_chars: str | int) -> int:
    """Estimate the tokens of a text, as Vertex's limits are phrased: 1,000 tokens ≈ 4,000 characters.

    The estimate is ``ceil(characters / 4)``, counting characters as Python ``len`` does (code points).
    It is a documented rule of thumb, not the model's tokenizer, which the API does not expose.

    Args:
        text_or_chars: A text, or a number of characters.

    Returns:
        The estimated token count.
    """
    chars = text_or_chars if isinstance(text_or_chars, int) else len(text_or_chars)
    return -(-chars // CHARS_PER_TOKEN)


def validate_file(path: str | Path, *, kind: DatasetKind = "training") -> DatasetReport:
    """Validate a dataset file on disk, checking its size before reading any line.

    Args:
        path: The JSONL file; problems name it as given.
        kind: ``"training"`` or ``"validation"`` (the example-count rules differ).

    Returns:
        The report; a missing or oversized file gives a report with one line-0 problem.

    Raises:
        ValueError: `kind` is not one of ``"training"``, ``"validation"``.
    """
    _check_kind(kind)
    name = str(path)
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return _file_level_report(name, kind, 0, "file not found")
    except IsADirectoryError:
        return _file_level_report(name, kind, 0, "is a directory, not a file")
    except OSError as exc:
        return _file_level_report(name, kind, 0, f"cannot read file ({exc.strerror})")
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_FILE_BYTES:
            return _file_level_report(name, kind, size, _size_rule(size))
        return validate_stream(handle, name=name, kind=kind)


def validate_stream(stream: ByteStream, *, name: str, kind: DatasetKind) -> DatasetReport:
    """Validate a dataset read from a binary stream (a file, a GCS blob reader), in one pass.

    Args:
        stream: Binary stream positioned at the start of the data; read to the end, not closed.
        name: The file name to use in problems.
        kind: ``"training"`` or ``"validation"``.

    Returns:
        The report, including the SHA-256 and byte count of everything read.

    Raises:
        ValueError: `kind` is not one of ``"training"``, ``"validation"``.
    """
    _check_kind(kind)
    reader = _LineReader(stream)
    problems = _ProblemList(name)
    blank_lines = 0
    total_chars = 0
    max_chars = 0
    # The line of the first validation example past the limit, where that problem is reported. Each blank
    # line moves it down by one; counting examples per line instead would cost the hot path an addition.
    check_line = MAX_VALIDATION_EXAMPLES + 1 if kind == "validation" else 0  # 0: no limit, never matches
    over_limit_line = 0
    max_chars_per_example = MAX_EXAMPLE_TOKENS * CHARS_PER_TOKEN
    loads = _loads_line
    decode_error = orjson.JSONDecodeError
    example_chars = _example_chars

    problem: tuple[str | None, str]  # (field path, rule) of the line's problem
    line = 0
    for batch in reader.batches():
        for raw in batch:
            line += 1
            # Hot path: one parse, one structural check; anything unusual leaves it.
            try:
                example = loads(raw)
            except decode_error as exc:
                if raw is not None and not raw.strip():
                    blank_lines += 1
                    if check_line and not over_limit_line:
                        check_line += 1
                    problems.add(line, None, "blank line (one JSON example per line)")
                    continue
                problem = None, _json_rule(raw, exc)
            else:
                # The documented shape, one user turn then one model turn with one text part each, checked
                # inline: a function call per line costs ~5% of the throughput. Every other shape, and
                # every exception (raised by subscripting or unpacking another JSON type), goes to
                # _example_chars, which agrees with this block on this shape.
                try:
                    user, model = example["contents"]
                    (user_part,) = user["parts"]
                    (model_part,) = model["parts"]
                    user_text = user_part["text"]
                    model_text = model_part["text"]
                    if (
                        user["role"] == "user"
                        and model["role"] == "model"
                        # No extra keys: the subscripts above found 1 + 2 + 2 + 1 + 1 keys, so a sum of 7
                        # means none has more (one comparison instead of five).
                        and len(example) + len(user) + len(model) + len(user_part) + len(model_part) == 7
                        and user_text
                        and model_text
                        and not user_text.isspace()  # raises AttributeError unless a str
                        and not model_text.isspace()
                    ):
                        chars = len(user_text) + len(model_text)
                    else:
                        chars = example_chars(example)
                except (KeyError, TypeError, ValueError, AttributeError):
                    chars = example_chars(example)
                if 0 <= chars <= max_chars_per_example:
                    total_chars += chars
                    if chars > max_chars:
                        max_chars = chars
                    if line == check_line:
                        over_limit_line = line
                    continue
                problem = _diagnose(example) if chars < 0 else ("contents", _token_rule(chars))
            if line == check_line:
                over_limit_line = line
            problems.add(line, *problem)
    examples = line - blank_lines

    if reader.bytes > MAX_FILE_BYTES:
        problems.add(0, None, _size_rule(reader.bytes))
    if examples == 0:
        problems.add(0, None, "no examples (the file is empty)")
    if over_limit_line:
        rule = f"validation set has {examples:,} examples; the limit is {MAX_VALIDATION_EXAMPLES:,}"
        problems.add(over_limit_line, None, rule)
    warnings: list[str] = []
    if kind == "training" and 0 < examples < RECOMMENDED_MIN_TRAINING_EXAMPLES:
        warnings.append(
            f"{name}: only {examples} training examples; "
            f"Vertex recommends at least {RECOMMENDED_MIN_TRAINING_EXAMPLES} (100-500 or more)"
        )
    listed = problems.listed()
    return DatasetReport(
        path=name,
        kind=kind,
        example_count=examples,
        bytes=reader.bytes,
        sha256=reader.hexdigest(),
        max_example_tokens=estimate_tokens(max_chars),
        total_characters=total_chars,
        problems=listed,
        warnings=warnings,
        omitted_problems=problems.count - len(listed),
    )


def iter_examples(stream: ByteStream) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Yield the valid examples of a dataset, skipping every line that breaks a rule.

    The text parts of a turn are concatenated without a separator.

    Args:
        stream: Binary stream of JSONL data.

    Yields:
        ``(line number, [(role, text), ...])`` for each valid line, in file order.
    """
    max_chars_per_example = MAX_EXAMPLE_TOKENS * CHARS_PER_TOKEN
    loads = _loads_line
    line = 0
    for raw in _LineReader(stream, hashed=False).lines():
        line += 1
        try:
            example = loads(raw)
        except orjson.JSONDecodeError:
            continue
        chars = _example_chars(example)
        if 0 <= chars <= max_chars_per_example:
            turns = [
                (turn["role"], "".join([part["text"] for part in turn["parts"]])) for turn in example["contents"]
            ]
            yield line, turns


def example_pairs(turns: Sequence[tuple[str, str]]) -> tuple[str, str]:
    """Flatten a (multi-turn) example into one prompt and one answer.

    Args:
        turns: ``(role, text)`` pairs as yielded by :func:`iter_examples`.

    Returns:
        ``(prompt, answer)``: the texts of all turns before the last model turn joined with ``"\\n"``,
        and the text of the last model turn.

    Raises:
        ValueError: `turns` is empty or does not end with a ``"model"`` turn.
    """
    if not turns or turns[-1][0] != "model":
        raise ValueError('an example must end with a "model" turn')
    return "\n".join(text for _, text in turns[:-1]), turns[-1][1]


# --------------------------------------------------------------------------------------------------------
# Internals


class _ProblemList:
    """Collects problems up to MAX_PROBLEMS and counts the rest."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.items: list[Problem] = []
        self.count = 0

    def add(self, line: int, field_path: str | None, rule: str) -> None:
        self.count += 1
        if len(self.items) < MAX_PROBLEMS or line == 0:
            # File-level problems (line 0) are always kept: they explain the others.
            self.items.append(Problem(self.name, line, field_path, rule))

    def listed(self) -> list[Problem]:
        """The kept problems in line order, file-level ones first, at most MAX_PROBLEMS of them."""
        return sorted(self.items, key=lambda problem: problem.line)[:MAX_PROBLEMS]


class _LineReader:
    """Iterates the lines of a binary stream (without the newline), hashing and counting bytes per block.

    An overlong line is yielded as ``None`` once, after its bytes have been skipped: `orjson.loads(None)`
    raises JSONDecodeError, so the hot path needs no extra test for it.
    """

    def __init__(self, stream: ByteStream, *, hashed: bool = True) -> None:
        self._stream = stream
        self._digest = hashlib.sha256() if hashed else None
        self.bytes = 0

    def hexdigest(self) -> str:
        return self._digest.hexdigest() if self._digest is not None else ""

    def lines(self) -> Iterator[bytes | None]:
        """Each line in turn."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[bytes | None]]:
        """The lines of each block read, as lists: a loop over a list costs less per line than a generator."""
        read = self._stream.read
        update = self._digest.update if self._digest is not None else None
        # Blocks no larger than the line limit: a line inside one block is then always short enough,
        # so only a line that spans blocks needs a length check.
        block_size = min(READ_BLOCK_BYTES, MAX_LINE_BYTES)
        carry = b""
        overlong = False
        # SHA-256 releases the GIL on large buffers, so a worker thread hashes block N while this thread
        # parses it. Waiting for block N-1's hash before handing over block N bounds memory to two blocks.
        hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-sha256") if update else None
        hashing: Future[None] | None = None
        try:
            while True:
                block = read(block_size)
                if not block:
                    break
                self.bytes += len(block)
                if hasher is not None and update is not None:
                    if hashing is not None:
                        hashing.result()
                    hashing = hasher.submit(update, block)
                pieces = block.split(b"\n")
                if len(pieces) == 1:  # no newline in this block: the current line goes on
                    if not overlong:
                        carry += block
                        if len(carry) > MAX_LINE_BYTES:
                            overlong, carry = True, b""
                    continue
                # The same list, not a copy: its first line becomes None when it is overlong.
                lines = cast("list[bytes | None]", pieces)
                if overlong:
                    lines[0], overlong = None, False
                elif carry:
                    first = carry + pieces[0]
                    lines[0] = None if len(first) > MAX_LINE_BYTES else first
                carry = pieces.pop()  # the start of the next line (the last piece: never the None)
                yield lines
            if hashing is not None:
                hashing.result()
            if overlong:
                yield [None]
            elif carry:
                yield [None if len(carry) > MAX_LINE_BYTES else carry]
        finally:
            if hasher is not None:
                hasher.shutdown(wait=True)


def _example_chars(example: Any) -> int:
    """Characters of text in a valid example (parsed JSON, of any shape), or -1 if it breaks a structural rule.

    The usual shape (user/model exchanges, one text part per turn) is checked first with straight-line
    code; any other shape, and any exception on the way, goes to the general check `_text_chars`.
    """
    try:
        contents = example["contents"]
        if len(example) == 1:
            chars = 0
            turns = iter(contents)
            for user in turns:
                # On any other JSON shape, subscripting, unpacking, next() or isspace() raises.
                model = next(turns)
                if user["role"] != "user" or model["role"] != "model" or len(user) != 2 or len(model) != 2:
                    break
                (user_part,) = user["parts"]
                (model_part,) = model["parts"]
                user_text = user_part["text"]
                model_text = model_part["text"]
                if (
                    len(user_part) != 1
                    or len(model_part) != 1
                    or not user_text
                    or not model_text
                    or user_text.isspace()
                    or model_text.isspace()
                ):
                    break
                chars += len(user_text) + len(model_text)
            else:
                if chars:  # zero when contents is empty
                    return chars
    except (KeyError, TypeError, ValueError, AttributeError, StopIteration):
        pass
    return _text_chars(example)


def _text_chars(example: object) -> int:
    """Characters of text in a well-formed example, or -1 if it breaks any structural rule.

    Written for speed; `_diagnose` says what is wrong and must find a problem whenever this returns -1.
    """
    if type(example) is not dict or len(example) != 1:
        return -1
    contents = example.get("contents")
    if type(contents) is not list or not contents or len(contents) & 1:
        return -1
    chars = 0
    expected = "user"
    for turn in contents:
        if type(turn) is not dict or len(turn) != 2 or turn.get("role") != expected:
            return -1
        parts = turn.get("parts")
        if type(parts) is not list or not parts:
            return -1
        for part in parts:
            if type(part) is not dict or len(part) != 1:
                return -1
            text = part.get("text")
            if type(text) is not str or not text or text.isspace():
                return -1
            chars += len(text)
        expected = "model" if expected == "user" else "user"
    return chars


def _diagnose(example: object) -> tuple[str | None, str]:
    """The first rule a parsed line breaks, as (field path, rule)."""
    if not isinstance(example, dict):
        return None, f"expected a JSON object, got {_json_type(example)}"
    for key in example:
        if key in UNSUPPORTED_TOP_LEVEL_KEYS:
            return key, f"not supported by {MODEL_NAME} (documented for Gemini only)"
        if key != "contents":
            return key, 'unknown key (the only key is "contents")'
    if "contents" not in example:
        return "contents", "required key is missing"
    contents = example["contents"]
    if not isinstance(contents, list):
        return "contents", f"expected a list of turns, got {_json_type(contents)}"
    if not contents:
        return "contents", "must not be empty"
    previous = None
    for index, turn in enumerate(contents):
        path = f"contents[{index}]"
        if not isinstance(turn, dict):
            return path, f"expected an object with role and parts, got {_json_type(turn)}"
        for key in turn:
            if key not in ("role", "parts"):
                return f"{path}.{key}", 'unknown key (a turn has "role" and "parts")'
        if "role" not in turn:
            return f"{path}.role", "required key is missing"
        role = turn["role"]
        if role not in ROLES:
            shown = orjson.dumps(role).decode() if isinstance(role, str) else _json_type(role)
            return f"{path}.role", f'expected "user" or "model", got {shown}'
        if previous is None and role != "user":
            return f"{path}.role", f'expected "user" first, got "{role}"'
        if previous is not None and role == previous:
            wanted = "model" if previous == "user" else "user"
            return f"{path}.role", f'expected "{wanted}" after "{previous}", got "{role}"'
        previous = role
        if "parts" not in turn:
            return f"{path}.parts", "required key is missing"
        parts = turn["parts"]
        if not isinstance(parts, list):
            return f"{path}.parts", f"expected a list of parts, got {_json_type(parts)}"
        if not parts:
            return f"{path}.parts", "must not be empty"
        for part_index, part in enumerate(parts):
            part_path = f"{path}.parts[{part_index}]"
            if not isinstance(part, dict):
                return part_path, f"expected an object with text, got {_json_type(part)}"
            for key in part:
                if key in NON_TEXT_PARTS:
                    return part_path, f"{key} parts are not supported by {MODEL_NAME} (text only)"
                if key != "text":
                    return f"{part_path}.{key}", 'unknown key (a part has only "text")'
            if "text" not in part:
                return f"{part_path}.text", "required key is missing"
            text = part["text"]
            if not isinstance(text, str):
                return f"{part_path}.text", f"expected a string, got {_json_type(text)}"
            if not text.strip():
                return f"{part_path}.text", "must not be empty or whitespace only"
    if previous != "model":
        return f"contents[{len(contents) - 1}].role", f'the last turn must be "model" (the translation), got "{previous}"'
    return None, "not a valid example"  # unreachable while _text_chars and _diagnose agree


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _json_rule(raw: bytes | None, exc: orjson.JSONDecodeError) -> str:
    if raw is None:
        return f"line longer than {MAX_LINE_BYTES:,} bytes (an example has ~4,000 characters at most)"
    # UTF-16 text (what some editors and PowerShell's `>` write) fails as UTF-8 or as JSON on every line;
    # name the encoding instead of the first odd byte, which says nothing about the fix.
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "invalid UTF-8 (starts with a UTF-16 byte order mark; save the file as UTF-8)"
    nul = raw.find(b"\x00")
    if nul >= 0:
        # JSON text never holds a raw NUL: binary data, or UTF-16 without a BOM (every ASCII character
        # comes with a NUL byte there, before or after the first character that is not valid UTF-8).
        return f"invalid JSON (NUL byte at byte column {nul + 1}; UTF-16 or binary data? save the file as UTF-8)"
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"invalid UTF-8 (byte 0x{raw[bad.start]:02x} at byte column {bad.start + 1})"
    if raw.startswith(b"\xef\xbb\xbf"):
        return "invalid JSON (starts with a UTF-8 byte order mark; save the file without BOM)"
    return f"invalid JSON ({exc.msg} at column {exc.colno})"


def _token_rule(chars: int) -> str:
    return (
        f"about {estimate_tokens(chars):,} tokens ({chars:,} characters / {CHARS_PER_TOKEN}); "
        f"the limit is {MAX_EXAMPLE_TOKENS:,} tokens per example (input + output)"
    )


def _size_rule(size: int) -> str:
    limit = f"{MAX_FILE_BYTES:,} bytes"
    if MAX_FILE_BYTES % 1024**3 == 0:
        limit = f"{MAX_FILE_BYTES // 1024**3} GiB ({limit})"
    return f"file is {size:,} bytes; the limit is {limit}"


def _file_level_report(name: str, kind: DatasetKind, size: int, rule: str) -> DatasetReport:
    return DatasetReport(
        path=name,
        kind=kind,
        example_count=0,
        bytes=size,
        sha256="",
        max_example_tokens=0,
        total_characters=0,
        problems=[Problem(name, 0, None, rule)],
        warnings=[],
    )


def _check_kind(kind: str) -> None:
    if kind not in DATASET_KINDS:
        raise ValueError(f'kind must be "training" or "validation", got {kind!r}')

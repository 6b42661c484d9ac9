"""Tests of tuning.dataset: the translation-llm-002 JSONL rules, the report and the streaming reader."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import orjson
import pytest

from tuning import dataset
from tuning.dataset import (
    DatasetReport,
    Problem,
    estimate_tokens,
    example_pairs,
    iter_examples,
    validate_file,
    validate_stream,
)
from tuning.errors import DatasetError

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data"


def example(*turns: tuple[str, str]) -> dict:
    return {"contents": [{"role": role, "parts": [{"text": text}]} for role, text in turns]}


def pair(english: str = "Hello.", spanish: str = "Hola.") -> dict:
    return example(("user", f"English: {english} Spanish:"), ("model", spanish))


def jsonl(*rows: dict | bytes | str) -> bytes:
    lines = []
    for row in rows:
        if isinstance(row, dict):
            lines.append(orjson.dumps(row))
        elif isinstance(row, str):
            lines.append(row.encode())
        else:
            lines.append(row)
    return b"".join(line + b"\n" for line in lines)


@pytest.fixture
def write(tmp_path: Path):
    """Write JSONL rows to a file in tmp_path and return its path."""

    def _write(*rows: dict | bytes | str, name: str = "train.jsonl") -> Path:
        path = tmp_path / name
        path.write_bytes(jsonl(*rows))
        return path

    return _write


def only_problem(report: DatasetReport) -> str:
    assert len(report.problems) == 1, [str(problem) for problem in report.problems]
    return str(report.problems[0])


def check(*rows: dict | bytes | str, kind: str = "training") -> DatasetReport:
    return validate_stream(io.BytesIO(jsonl(*rows)), name="train.jsonl", kind=kind)


# ---------------------------------------------------------------------------------------------- sample data


def test_sample_training_set_is_valid_with_its_counts():
    report = validate_file(DATA / "train.jsonl")

    assert report.ok
    assert (report.kind, report.example_count, report.warnings) == ("training", 230, [])
    assert 0 < report.max_example_tokens <= 50


def test_sample_validation_set_is_valid_with_its_counts():
    report = validate_file(DATA / "validation.jsonl", kind="validation")

    assert report.ok
    assert (report.kind, report.example_count, report.warnings) == ("validation", 60, [])


def test_sample_sets_share_no_example():
    train = {line for line in (DATA / "train.jsonl").read_bytes().splitlines()}
    validation = {line for line in (DATA / "validation.jsonl").read_bytes().splitlines()}

    assert len(train) == 230 and len(validation) == 60
    assert not train & validation


def test_sha256_and_bytes_match_the_file():
    path = DATA / "train.jsonl"

    report = validate_file(path)

    assert report.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.bytes == path.stat().st_size


def test_validate_stream_equals_validate_file():
    path = DATA / "invalid" / "bad_json_line3.jsonl"

    from_file = validate_file(path)
    from_stream = validate_stream(io.BytesIO(path.read_bytes()), name=str(path), kind="training")

    assert from_stream == from_file


def test_total_characters_and_max_tokens_count_every_text():
    report = check(example(("user", "a" * 10), ("model", "b" * 7)), example(("user", "c"), ("model", "d")))

    assert report.total_characters == 19
    assert report.max_example_tokens == 5  # ceil(17 / 4)


# ---------------------------------------------------------------------------------------------- line rules


def test_invalid_json_names_line_and_column():
    report = validate_file(DATA / "invalid" / "bad_json_line3.jsonl")

    assert only_problem(report).startswith(f"{DATA / 'invalid' / 'bad_json_line3.jsonl'}:3: invalid JSON (")
    assert report.problems[0].rule == "invalid JSON (unexpected end of data at column 116)"


def test_invalid_json_reports_the_column_of_the_unexpected_character():
    report = check(pair(), b'{"contents": x}')

    assert only_problem(report) == (
        "train.jsonl:2: invalid JSON (unexpected character, expected a JSON value at column 14)"
    )


def test_invalid_utf8_is_reported_with_its_byte():
    report = check(b'{"contents": "\xff"}')

    assert only_problem(report) == "train.jsonl:1: invalid UTF-8 (byte 0xff at byte column 15)"


def test_byte_order_mark_is_reported():
    report = check(b"\xef\xbb\xbf" + orjson.dumps(pair()))

    assert only_problem(report) == (
        "train.jsonl:1: invalid JSON (starts with a UTF-8 byte order mark; save the file without BOM)"
    )


def test_blank_line_is_an_error():
    report = check(pair(), b"", pair())

    assert only_problem(report) == "train.jsonl:2: blank line (one JSON example per line)"
    assert report.example_count == 2


def test_whitespace_only_line_is_a_blank_line():
    report = check(pair(), b"  \t\r")

    assert only_problem(report) == "train.jsonl:2: blank line (one JSON example per line)"


def test_line_that_is_not_an_object_is_an_error():
    report = check(b'[{"role": "user"}]')

    assert only_problem(report) == "train.jsonl:1: expected a JSON object, got an array"


def test_missing_contents_is_an_error():
    report = check({})

    assert only_problem(report) == "train.jsonl:1: contents: required key is missing"


def test_empty_contents_is_an_error():
    report = check({"contents": []})

    assert only_problem(report) == "train.jsonl:1: contents: must not be empty"


def test_contents_must_be_a_list():
    report = check({"contents": {"role": "user"}})

    assert only_problem(report) == "train.jsonl:1: contents: expected a list of turns, got an object"


def test_system_instruction_is_not_supported():
    row = {"systemInstruction": {"parts": [{"text": "Translate."}]}, **pair()}

    report = check(row)

    assert only_problem(report) == (
        "train.jsonl:1: systemInstruction: not supported by translation-llm-002 (documented for Gemini only)"
    )


def test_unknown_top_level_key_is_named():
    report = check({**pair(), "tools": []})

    assert only_problem(report) == 'train.jsonl:1: tools: unknown key (the only key is "contents")'


def test_wrong_role_order_names_the_turn():
    path = DATA / "invalid" / "wrong_role_order.jsonl"

    report = validate_file(path)

    assert only_problem(report) == f'{path}:2: contents[1].role: expected "model" after "user", got "user"'


def test_first_turn_must_be_user():
    report = check(example(("model", "Hola."), ("user", "Hello.")))

    assert only_problem(report) == 'train.jsonl:1: contents[0].role: expected "user" first, got "model"'


def test_last_turn_must_be_model():
    report = check(example(("user", "a"), ("model", "b"), ("user", "c")))

    assert only_problem(report) == (
        'train.jsonl:1: contents[2].role: the last turn must be "model" (the translation), got "user"'
    )


def test_single_user_turn_is_an_error():
    report = check(example(("user", "English: Hello. Spanish:")))

    assert only_problem(report) == (
        'train.jsonl:1: contents[0].role: the last turn must be "model" (the translation), got "user"'
    )


def test_unknown_role_is_an_error():
    report = check(example(("user", "a"), ("assistant", "b")))

    assert only_problem(report) == 'train.jsonl:1: contents[1].role: expected "user" or "model", got "assistant"'


def test_missing_role_is_an_error():
    row = pair()
    del row["contents"][1]["role"]

    report = check(row)

    assert only_problem(report) == "train.jsonl:1: contents[1].role: required key is missing"


def test_unknown_turn_key_is_named():
    row = pair()
    row["contents"][0]["name"] = "alice"

    report = check(row)

    assert only_problem(report) == 'train.jsonl:1: contents[0].name: unknown key (a turn has "role" and "parts")'


def test_empty_parts_is_an_error():
    row = pair()
    row["contents"][1]["parts"] = []

    report = check(row)

    assert only_problem(report) == "train.jsonl:1: contents[1].parts: must not be empty"


def test_empty_text_is_an_error():
    path = DATA / "invalid" / "empty_text.jsonl"

    report = validate_file(path)

    assert only_problem(report) == f"{path}:2: contents[1].parts[0].text: must not be empty or whitespace only"


def test_whitespace_only_text_is_an_error():
    report = check(example(("user", " \n\t"), ("model", "Hola.")))

    assert only_problem(report) == (
        "train.jsonl:1: contents[0].parts[0].text: must not be empty or whitespace only"
    )


def test_text_must_be_a_string():
    row = pair()
    row["contents"][1]["parts"][0]["text"] = 42

    report = check(row)

    assert only_problem(report) == "train.jsonl:1: contents[1].parts[0].text: expected a string, got a number"


@pytest.mark.parametrize("kind", ["inlineData", "fileData"])
def test_non_text_part_is_not_supported(kind: str):
    row = pair()
    row["contents"][0]["parts"].append({kind: {"mimeType": "image/png"}})

    report = check(row)

    assert only_problem(report) == (
        f"train.jsonl:1: contents[0].parts[1]: {kind} parts are not supported by translation-llm-002 (text only)"
    )


def test_unknown_part_key_is_named():
    row = pair()
    row["contents"][1]["parts"][0]["lang"] = "es"

    report = check(row)

    assert only_problem(report) == 'train.jsonl:1: contents[1].parts[0].lang: unknown key (a part has only "text")'


def test_multi_turn_example_is_valid():
    report = check(example(("user", "English: Hi. Spanish:"), ("model", "Hola."), ("user", "Again?"), ("model", "¿Otra vez?")))

    assert report.ok


def test_several_text_parts_in_a_turn_are_valid():
    row = {"contents": [{"role": "user", "parts": [{"text": "ab"}, {"text": "cd"}]}, {"role": "model", "parts": [{"text": "e"}]}]}

    report = check(row)

    assert report.ok and report.total_characters == 5


def test_crlf_line_endings_are_accepted():
    data = orjson.dumps(pair()) + b"\r\n" + orjson.dumps(pair("Bye.", "Adiós.")) + b"\r\n"

    report = validate_stream(io.BytesIO(data), name="train.jsonl", kind="training")

    assert report.ok and report.example_count == 2


def test_last_line_without_newline_is_counted():
    data = orjson.dumps(pair()) + b"\n" + orjson.dumps(pair("Bye.", "Adiós."))

    report = validate_stream(io.BytesIO(data), name="train.jsonl", kind="training")

    assert report.ok and report.example_count == 2


def test_each_line_reports_its_first_problem_only():
    row = {"systemInstruction": {}, "contents": []}

    report = check(row, row)

    assert [problem.line for problem in report.problems] == [1, 2]


# ---------------------------------------------------------------------------------------------- tokens


@pytest.mark.parametrize(("value", "tokens"), [(0, 0), (1, 1), (4, 1), (5, 2), (4000, 1000), (4001, 1001), ("abcde", 2)])
def test_estimate_tokens_is_characters_over_four_rounded_up(value: int | str, tokens: int):
    assert estimate_tokens(value) == tokens


def test_estimate_tokens_counts_characters_not_bytes():
    assert estimate_tokens("ñandú") == 2  # 5 characters, 7 bytes in UTF-8


def test_example_of_1000_tokens_is_valid():
    report = check(example(("user", "a" * 3000), ("model", "b" * 1000)))

    assert report.ok and report.max_example_tokens == 1000


def test_example_over_1000_tokens_is_an_error():
    report = check(pair(), example(("user", "a" * 3000), ("model", "b" * 1001)))

    assert only_problem(report) == (
        "train.jsonl:2: contents: about 1,001 tokens (4,001 characters / 4); "
        "the limit is 1,000 tokens per example (input + output)"
    )


def test_example_over_the_limit_is_left_out_of_the_statistics():
    report = check(pair("a", "b"), example(("user", "a" * 5000), ("model", "b")))

    assert report.max_example_tokens == estimate_tokens(len("English: a Spanish:") + 1)


# ---------------------------------------------------------------------------------------------- file rules


def test_fewer_than_100_training_examples_is_a_warning(write):
    path = write(*[pair(f"Sentence {index}.", f"Frase {index}.") for index in range(99)])

    report = validate_file(path)

    assert report.ok
    assert report.warnings == [
        f"{path}: only 99 training examples; Vertex recommends at least 100 (100-500 or more)"
    ]


def test_100_training_examples_give_no_warning(write):
    path = write(*[pair(f"Sentence {index}.", f"Frase {index}.") for index in range(100)])

    assert validate_file(path).warnings == []


def test_small_validation_set_gives_no_warning(write):
    path = write(pair(), name="validation.jsonl")

    report = validate_file(path, kind="validation")

    assert report.ok and report.warnings == []


def test_validation_set_of_1024_examples_is_valid(write):
    path = write(*[pair()] * 1024, name="validation.jsonl")

    assert validate_file(path, kind="validation").ok


def test_validation_set_over_1024_examples_is_an_error_at_the_first_extra_line(write):
    path = write(*[pair()] * 1030, name="validation.jsonl")

    report = validate_file(path, kind="validation")

    assert only_problem(report) == f"{path}:1025: validation set has 1,030 examples; the limit is 1,024"


def test_blank_lines_do_not_count_as_validation_examples(write):
    path = write(b"", *[pair()] * 1025, name="validation.jsonl")

    report = validate_file(path, kind="validation")

    assert [str(problem) for problem in report.problems] == [
        f"{path}:1: blank line (one JSON example per line)",
        f"{path}:1026: validation set has 1,025 examples; the limit is 1,024",
    ]


def test_training_set_has_no_example_limit(write):
    path = write(*[pair()] * 1100)

    assert validate_file(path).ok


def test_file_over_the_size_limit_is_rejected_before_reading(write, monkeypatch):
    path = write(pair(), pair())
    monkeypatch.setattr(dataset, "MAX_FILE_BYTES", 100)

    report = validate_file(path)

    size = path.stat().st_size
    assert only_problem(report) == f"{path}:0: file is {size:,} bytes; the limit is 100 bytes"
    assert (report.example_count, report.bytes, report.sha256) == (0, size, "")


def test_stream_over_the_size_limit_is_an_error(monkeypatch):
    monkeypatch.setattr(dataset, "MAX_FILE_BYTES", 100)

    report = check(pair(), pair())

    assert str(report.problems[0]) == f"train.jsonl:0: file is {report.bytes:,} bytes; the limit is 100 bytes"


def test_size_limit_is_one_gibibyte():
    assert dataset.MAX_FILE_BYTES == 1024**3


def test_missing_file_is_a_line_0_problem(tmp_path: Path):
    path = tmp_path / "missing.jsonl"

    report = validate_file(path)

    assert only_problem(report) == f"{path}:0: file not found"
    assert report.problems[0] == Problem(str(path), 0, None, "file not found")


def test_empty_file_is_an_error(write):
    path = write()

    report = validate_file(path)

    assert only_problem(report) == f"{path}:0: no examples (the file is empty)"


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match='kind must be "training" or "validation", got \'test\''):
        validate_stream(io.BytesIO(b""), name="x.jsonl", kind="test")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- report


def test_problem_str_with_field():
    problem = Problem("train.jsonl", 17, "contents[1].role", 'expected "model" after "user", got "user"')

    assert str(problem) == 'train.jsonl:17: contents[1].role: expected "model" after "user", got "user"'


def test_problem_str_without_field():
    assert str(Problem("train.jsonl", 3, None, "blank line")) == "train.jsonl:3: blank line"


def test_raise_for_problems_raises_dataset_error_with_each_problem():
    report = check(pair(), b"", {})

    with pytest.raises(DatasetError) as raised:
        report.raise_for_problems()

    assert raised.value.problems == [
        "train.jsonl:2: blank line (one JSON example per line)",
        "train.jsonl:3: contents: required key is missing",
    ]
    assert str(raised.value) == "\n".join(raised.value.problems)


def test_raise_for_problems_is_silent_for_a_valid_file():
    check(pair()).raise_for_problems()


def test_problems_past_the_cap_are_counted_not_listed(monkeypatch):
    monkeypatch.setattr(dataset, "MAX_PROBLEMS", 5)

    report = check(*[b"{"] * 12)

    assert [problem.line for problem in report.problems] == [1, 2, 3, 4, 5]
    assert (report.omitted_problems, report.problem_count, report.example_count) == (7, 12, 12)


def test_raise_for_problems_mentions_the_omitted_problems(monkeypatch):
    monkeypatch.setattr(dataset, "MAX_PROBLEMS", 2)
    report = check(*[b"{"] * 5)

    with pytest.raises(DatasetError) as raised:
        report.raise_for_problems()

    assert (len(raised.value.problems), raised.value.omitted) == (2, 3)
    assert str(raised.value).endswith("... and 3 more problems")


# ---------------------------------------------------------------------------------------------- streaming


def test_lines_spanning_read_blocks_are_reassembled(monkeypatch):
    data = (DATA / "train.jsonl").read_bytes()
    expected = validate_stream(io.BytesIO(data), name="train.jsonl", kind="training")
    monkeypatch.setattr(dataset, "READ_BLOCK_BYTES", 7)

    report = validate_stream(io.BytesIO(data), name="train.jsonl", kind="training")

    assert report == expected


def test_overlong_line_is_reported_without_buffering_it(monkeypatch):
    monkeypatch.setattr(dataset, "MAX_LINE_BYTES", 300)
    long_row = example(("user", "a" * 400), ("model", "b"))

    report = check(pair(), long_row, pair())

    assert only_problem(report) == (
        "train.jsonl:2: line longer than 300 bytes (an example has ~4,000 characters at most)"
    )
    assert report.example_count == 3


def test_overlong_last_line_without_newline_is_reported(monkeypatch):
    monkeypatch.setattr(dataset, "MAX_LINE_BYTES", 64)
    data = orjson.dumps(pair()) + b"\n" + b"x" * 1000

    report = validate_stream(io.BytesIO(data), name="train.jsonl", kind="training")

    assert [problem.line for problem in report.problems] == [1, 2]  # line 1 is also over 64 bytes
    assert report.problems[1].rule.startswith("line longer than 64 bytes")


def test_stream_is_read_in_blocks_not_whole(monkeypatch):
    sizes: list[int] = []

    class Recording(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            sizes.append(-1 if size is None else size)
            return super().read(size)

    validate_stream(Recording((DATA / "train.jsonl").read_bytes()), name="train.jsonl", kind="training")

    assert sizes and all(0 < size <= dataset.READ_BLOCK_BYTES for size in sizes)


# ---------------------------------------------------------------------------------------------- examples


def test_iter_examples_yields_valid_lines_with_their_numbers():
    data = jsonl(pair("Hi.", "Hola."), b"{", pair("Bye.", "Adiós."))

    examples = list(iter_examples(io.BytesIO(data)))

    assert examples == [
        (1, [("user", "English: Hi. Spanish:"), ("model", "Hola.")]),
        (3, [("user", "English: Bye. Spanish:"), ("model", "Adiós.")]),
    ]


def test_iter_examples_skips_examples_over_the_token_limit():
    data = jsonl(example(("user", "a" * 4001), ("model", "b")), pair())

    assert [line for line, _ in iter_examples(io.BytesIO(data))] == [2]


def test_iter_examples_joins_the_parts_of_a_turn():
    row = {"contents": [{"role": "user", "parts": [{"text": "ab"}, {"text": "cd"}]}, {"role": "model", "parts": [{"text": "e"}]}]}

    assert list(iter_examples(io.BytesIO(jsonl(row)))) == [(1, [("user", "abcd"), ("model", "e")])]


def test_iter_examples_reads_the_whole_sample_set():
    with open(DATA / "train.jsonl", "rb") as stream:
        assert sum(1 for _ in iter_examples(stream)) == 230


def test_example_pairs_of_a_single_turn():
    assert example_pairs([("user", "English: Hi. Spanish:"), ("model", "Hola.")]) == ("English: Hi. Spanish:", "Hola.")


def test_example_pairs_joins_earlier_turns_into_the_prompt():
    turns = [("user", "a"), ("model", "b"), ("user", "c"), ("model", "d")]

    assert example_pairs(turns) == ("a\nb\nc", "d")


def test_example_pairs_needs_a_final_model_turn():
    with pytest.raises(ValueError, match='must end with a "model" turn'):
        example_pairs([("user", "a")])


# ---------------------------------------------------------------------------------------------- consistency

_REPLACEMENTS = [None, 0, 7, True, "", " ", "x", [], [{}], {}, {"text": "x"}, [{"text": "x"}]]


def _mutants(node: object) -> list[object]:
    """Copies of `node` with one change anywhere: a value replaced, a key removed or a key added."""
    results: list[object] = [replacement for replacement in _REPLACEMENTS if replacement != node]
    if isinstance(node, dict):
        results.append({**node, "extra": "x"})
        for key, value in node.items():
            results.append({k: v for k, v in node.items() if k != key})
            results.extend({**node, key: mutant} for mutant in _mutants(value))
    elif isinstance(node, list):
        results.extend([node[:index] + node[index + 1 :] for index in range(len(node))])
        results.append(node + node[-1:])
        for index, value in enumerate(node):
            results.extend(node[:index] + [mutant] + node[index + 1 :] for mutant in _mutants(value))
    return results


@pytest.mark.parametrize(
    "seed",
    [
        pair(),
        example(("user", "a"), ("model", "b"), ("user", "c"), ("model", "d")),
        {"contents": [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}, {"role": "model", "parts": [{"text": "c"}]}]},
    ],
    ids=["one-exchange", "two-exchanges", "two-parts"],
)
def test_fast_paths_agree_with_the_general_check(seed: dict, monkeypatch):
    monkeypatch.setattr(dataset, "MAX_PROBLEMS", 10_000)
    mutants = _mutants(seed)
    data = b"".join(orjson.dumps(row) + b"\n" for row in [seed, *mutants])

    report = validate_stream(io.BytesIO(data), name="train.jsonl", kind="training")
    valid_lines = [line for line, _ in iter_examples(io.BytesIO(data))]

    expected_valid = [line for line, row in enumerate([seed, *mutants], 1) if dataset._text_chars(row) >= 0]
    invalid_lines = [problem.line for problem in report.problems]
    assert len(mutants) > 50 and len(valid_lines) > 1 and invalid_lines  # both outcomes exercised
    assert valid_lines == expected_valid
    assert sorted(valid_lines + invalid_lines) == list(range(1, len(mutants) + 2))
    assert all(problem.rule != "not a valid example" for problem in report.problems)

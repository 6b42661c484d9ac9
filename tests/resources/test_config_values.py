"""Config value rules: values read as the pydantic settings model read them, failing with its words."""

from __future__ import annotations

import math

import pytest

from resources.config_values import (
    InvalidValue,
    boolean,
    bounded,
    checked,
    integer,
    number,
    one_of,
    string_map,
    text,
)


@pytest.mark.parametrize(("value", "expected"), [
    ("5", 5), (" 5\n", 5), ("+5", 5), ("-5", -5), ("05", 5), ("1_000", 1000), ("5.0", 5), ("5.000", 5),
    ("\xa05", 5),  # Unicode white space is trimmed
])
def test_integers(value, expected):
    assert integer(value) == expected and type(integer(value)) is int


@pytest.mark.parametrize("value", ["5.5", "5.", ".0", "1__0", "_1", "1_", "0x10", "1e2", "", " ", "٣", "\x1c5"])
def test_not_integers(value):
    with pytest.raises(InvalidValue, match=r"^Input should be a valid integer, unable to parse string as an integer$"):
        integer(value)


def test_integer_digits_are_limited_as_python_limits_them():
    assert integer("1" * 4300) > 0
    with pytest.raises(InvalidValue, match="^Unable to parse input string as an integer, exceeded maximum size$"):
        integer("1" * 4301)


@pytest.mark.parametrize(("value", "expected"), [
    ("1", 1.0), (" 2.5 ", 2.5), (".5", 0.5), ("5.", 5.0), ("1e3", 1000.0), ("1E-2", 0.01), ("-inf", -math.inf),
    ("Infinity", math.inf), ("1_000.5", 1000.5), ("1_e2", 100.0), ("1e400", math.inf),
])
def test_numbers(value, expected):
    assert number(value) == expected


@pytest.mark.parametrize("value", ["abc", "", ".", "1e", "0x1", " 1_0", "1__0", "_1", "1_", "١"])
def test_not_numbers(value):
    with pytest.raises(InvalidValue, match="^Input should be a valid number, unable to parse string as a number$"):
        number(value)


def test_nan_is_a_number_that_fails_an_upper_bound_first():
    assert math.isnan(number("NaN"))
    with pytest.raises(InvalidValue, match="^Input should be less than or equal to 100$"):
        bounded(number, ge=0, le=100)("nan")


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("TRUE", True), ("yes", True), ("on", True), ("1", True), ("t", True), ("y", True),
    ("false", False), ("Off", False), ("no", False), ("0", False), ("f", False), ("n", False),
])
def test_booleans(value, expected):
    assert boolean(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", " true", "2", "1.0"])
def test_not_booleans(value):
    with pytest.raises(InvalidValue, match="^Input should be a valid boolean, unable to interpret input$"):
        boolean(value)


@pytest.mark.parametrize(("rule", "message"), [
    (text, "Input should be a valid string"), (integer, "Input should be a valid integer"),
    (number, "Input should be a valid number"), (boolean, "Input should be a valid boolean"),
])
def test_json_objects_and_arrays_are_of_the_wrong_type(rule, message):
    for value in ({"a": 1}, [1]):
        with pytest.raises(InvalidValue, match=f"^{message}$"):
            rule(value)


def test_string_maps():
    assert string_map({"env": "local"}) == {"env": "local"}
    with pytest.raises(InvalidValue, match="^Input should be a valid dictionary$"):
        string_map("env=local")
    with pytest.raises(InvalidValue, match="^Input should be a valid string$"):
        string_map({"env": 1})


def test_one_of_lists_the_allowed_values():
    assert one_of("cancel", "abandon")("abandon") == "abandon"
    for rule, message in [(one_of("a"), "'a'"), (one_of("a", "b"), "'a' or 'b'"), (one_of("a", "b", "c"), "'a', 'b' or 'c'")]:
        with pytest.raises(InvalidValue, match=f"^Input should be {message}$"):
            rule("x")


@pytest.mark.parametrize(("rule", "value", "message"), [
    (bounded(integer, ge=1, le=100), "101", "less than or equal to 100"),
    (bounded(integer, ge=1, le=100), "0", "greater than or equal to 1"),
    (bounded(number, gt=0, le=100), "0", "greater than 0"),
    (bounded(number, gt=0, le=100), "-inf", "greater than 0"),
])
def test_bounds(rule, value, message):
    with pytest.raises(InvalidValue, match=f"^Input should be {message}$"):
        rule(value)


def test_checked_rules_prefix_their_problem():
    rule = checked(integer, lambda value: None if value == 4 else f"4 only, got {value}")
    assert rule("4") == 4
    with pytest.raises(InvalidValue, match="^Value error, 4 only, got 8$"):
        rule("8")

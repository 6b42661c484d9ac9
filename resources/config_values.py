"""Rules for stack config values: each turns what the Pulumi runtime hands over into a typed value or says why not.

Values arrive as strings; objects and arrays as parsed JSON. The settings were a pydantic model until its imports
cost every program run about 80 ms: these rules read values as its lax mode did (a stack file that loaded still
loads, to the same values) and fail with its words, which docs/configuration.md and tests/data/bad/configs.yaml
quote.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional

Rule = Callable[[Any], Any]


class InvalidValue(ValueError):
    """A value breaks its rule; the message is the rule, without the key."""


# What Rust's str::trim strips (Unicode White_Space); Python's str.strip() would also strip \x1c-\x1f.
_WHITE_SPACE = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
               "\u2028\u2029\u202f\u205f\u3000"
# Digits with single underscores between them, and an optional fraction of zeros only ("5.0" is 5). pydantic also
# read some malformed numbers after a leading zero ("0-9" as -9); not these rules. No such value reaches them from
# Pulumi: the integer keys are `type: integer` in Pulumi.yaml, which the engine checks first.
_INTEGER = re.compile(r"([+-]?[0-9]+(?:_[0-9]+)*)(?:\.0+)?", re.ASCII)
# Rust's float syntax: no underscores, no surrounding space.
_NUMBER = re.compile(r"[+-]?(?:inf|infinity|nan|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[+-]?[0-9]+)?)",
                     re.ASCII | re.IGNORECASE)
_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidValue("Input should be a valid string")
    return value


def integer(value: Any) -> int:
    if not isinstance(value, str):
        raise InvalidValue("Input should be a valid integer")
    match = _INTEGER.fullmatch(value.strip(_WHITE_SPACE))
    if match is None:
        raise InvalidValue("Input should be a valid integer, unable to parse string as an integer")
    try:
        return int(match.group(1))
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidValue("Unable to parse input string as an integer, exceeded maximum size") from None


def number(value: Any) -> float:
    if not isinstance(value, str):
        raise InvalidValue("Input should be a valid number")
    trimmed = value.strip(_WHITE_SPACE)
    if _NUMBER.fullmatch(trimmed):
        return float(trimmed)
    # Underscores between characters are dropped (from the untrimmed text), wherever they are: "1_e2" is 100.
    joined = value.replace("_", "")
    if "__" not in value and not value.startswith("_") and not value.endswith("_") and _NUMBER.fullmatch(joined):
        return float(joined)
    raise InvalidValue("Input should be a valid number, unable to parse string as a number")


def boolean(value: Any) -> bool:
    if not isinstance(value, str):
        raise InvalidValue("Input should be a valid boolean")
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidValue("Input should be a valid boolean, unable to interpret input")


def string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidValue("Input should be a valid dictionary")
    if not all(isinstance(item, str) for item in value.values()):
        raise InvalidValue("Input should be a valid string")
    return value


def one_of(*allowed: str) -> Rule:
    """Exactly one of `allowed` (the message lists them: 'a', 'b' or 'c')."""
    quoted = [repr(item) for item in allowed]
    listed = quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"

    def rule(value: Any) -> str:
        if value not in allowed:
            raise InvalidValue(f"Input should be {listed}")
        return str(value)
    return rule


def bounded(parse: Callable[[Any], Any], *, gt: Optional[float] = None, ge: Optional[float] = None,
            le: Optional[float] = None) -> Rule:
    """`parse`, then the bounds; the upper one first, so NaN fails "less than or equal"."""
    def rule(value: Any) -> Any:
        parsed = parse(value)
        if le is not None and not parsed <= le:
            raise InvalidValue(f"Input should be less than or equal to {le}")
        if ge is not None and not parsed >= ge:
            raise InvalidValue(f"Input should be greater than or equal to {ge}")
        if gt is not None and not parsed > gt:
            raise InvalidValue(f"Input should be greater than {gt}")
        return parsed
    return rule


def checked(parse: Rule, check: Callable[[Any], Optional[str]]) -> Rule:
    """`parse`, then `check`, which returns a problem (shown as "Value error, PROBLEM") or None."""
    def rule(value: Any) -> Any:
        parsed = parse(value)
        problem = check(parsed)
        if problem:
            raise InvalidValue(f"Value error, {problem}")
        return parsed
    return rule

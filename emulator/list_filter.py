"""The one list-filter grammar of the emulator, a subset of AIP-160.

    filter := or;  or := and ("OR" and)*;  and := unit ("AND" unit)*;  unit := "(" or ")" | term
    term   := FIELD ("=" | "!=" | ":") VALUE  |  FIELD "(" STRING ")"      VALUE: "quoted", a bare word or *

Each list route says which fields it supports and what a term over them means, through a `compile_term(field,
op, value)` that raises `UnknownField` or `UnsupportedOperator`; the parser turns those, and any syntax it does
not know, into INVALID_ARGUMENT naming the term. A filter is never silently ignored.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable, NoReturn

from emulator.errors import InvalidArgument

Predicate = Callable[[Any], bool]
TermCompiler = Callable[[str, str, str], Predicate]
CALL = "()"  # the `op` a compiler gets for `field("value")`

# Anything else (an unclosed string, a lone `!`) is `bad`, and makes the filter unsupported.
_TOKEN = re.compile(r'(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>!=|=|:|\(|\))|(?P<word>[^\s()"=!:]+)|(?P<bad>\S)')


class UnknownField(Exception):
    pass


class UnsupportedOperator(Exception):
    pass


def parse_filter(text: str, compile_term: TermCompiler, supported: str) -> Predicate:
    """Compile `text` to a predicate; an empty filter matches everything. `supported` lists the accepted terms."""
    return _Parser(text or "", compile_term, supported).parse()


class _Parser:
    """Recursive descent over the tokens of one filter."""

    def __init__(self, text: str, compile_term: TermCompiler, supported: str) -> None:
        self.text, self.compile_term, self.supported = text, compile_term, supported
        self.tokens: list[tuple[str, str, int, int]] = []  # (kind, value, start, end)
        self.pos = 0
        for match in _TOKEN.finditer(text):
            kind, raw = match.lastgroup or "", match.group()
            if kind == "bad":
                self._fail(f"unexpected input at {text[match.start():].strip()[:20]!r}")
            self.tokens.append((kind, self._string(raw) if kind == "string" else raw, match.start(), match.end()))

    def _string(self, quoted: str) -> str:
        """A quoted value, with JSON's escapes."""
        try:
            return json.loads(quoted)
        except json.JSONDecodeError as error:
            self._fail(f"bad escape in {quoted} ({error.msg})")

    def _fail(self, why: str) -> NoReturn:
        raise InvalidArgument(f"Unsupported filter {self.text!r}: {why}; supported: {self.supported}")

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos][:2] if self.pos < len(self.tokens) else None

    def _take(self, *kinds: str, value: str | None = None) -> str:
        token = self._peek()
        if token is None or token[0] not in kinds or (value is not None and token[1] != value):
            self._fail(f"expected {value or ' or '.join(kinds)} at token {self.pos + 1}")
        self.pos += 1
        return token[1]

    def parse(self) -> Predicate:
        if not self.tokens:
            return lambda item: True
        predicate = self._or()
        if self._peek() is not None:
            self._fail(f"unexpected {self._peek()[1]!r}")
        return predicate

    def _keyword(self, word: str) -> bool:
        """Whether the next token is the keyword `word` (AND, OR: any case); consumes it if so."""
        token = self._peek()
        if token is not None and token[0] == "word" and token[1].upper() == word:
            self.pos += 1
            return True
        return False

    def _or(self) -> Predicate:
        """`and (OR and)*`, where `and := unit (AND unit)*`: AND binds tighter."""
        return self._joined("OR", lambda: self._joined("AND", self._unit, all), any)

    def _joined(self, keyword: str, operand: Callable[[], Predicate], combine: Callable[..., bool]) -> Predicate:
        """`operand ({keyword} operand)*`: one predicate that `combine`s (any, all) the operands' answers."""
        parts = [operand()]
        while self._keyword(keyword):
            parts.append(operand())
        return parts[0] if len(parts) == 1 else (lambda item: combine(part(item) for part in parts))

    def _unit(self) -> Predicate:
        if self._peek() == ("op", "("):
            self.pos += 1
            inner = self._or()
            self._take("op", value=")")
            return inner
        start = self.tokens[self.pos][2] if self.pos < len(self.tokens) else len(self.text)
        field = self._take("word")
        if self._peek() == ("op", "("):
            self.pos += 1
            op, value = CALL, self._take("string")
            self._take("op", value=")")
        else:
            if self._peek() not in (("op", "="), ("op", "!="), ("op", ":")):
                self._fail(f"expected =, != or : after {field}")
            op = self._take("op")
            value = self._take("string", "word")
        term = self.text[start:self.tokens[self.pos - 1][3]].strip()
        try:
            return self.compile_term(field, op, value)
        except UnknownField:
            raise InvalidArgument(f"Unsupported filter term {term!r}: unknown field {field!r}; supported: "
                                  f"{self.supported}") from None
        except UnsupportedOperator:
            raise InvalidArgument(f"Unsupported filter term {term!r}: operator {op!r} is not supported on "
                                  f"{field!r}; supported: {self.supported}") from None


def equality(op: str, get: Callable[[Any], Any], value: Any) -> Predicate:
    """`get(item) = value` or `!=`; other operators are unsupported."""
    if op == "=":
        return lambda item: get(item) == value
    if op == "!=":
        return lambda item: get(item) != value
    raise UnsupportedOperator(op)

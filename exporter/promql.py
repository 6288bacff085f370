"""The PromQL subset the forecast path API accepts: a tokenizer and a recursive-descent parser.

A query is a plain vector selector (label matchers with Prometheus' RE2 regex semantics) or
constant arithmetic on numbers, as Prometheus parses them; anything else is refused with
Prometheus' ``line:column:`` error position. linborg.exporter.promapi serves what it returns.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from linborg.families import FORECAST_PATH

#: The example the errors for unsupported queries show.
SELECTOR_EXAMPLE = f'{FORECAST_PATH}{{server="...",metric="..."}}'


# --- The query language subset ---------------------------------------------------------------


class ParseError(Exception):
    """Raise for a query outside the supported subset; ``pos`` is the offset it is about."""

    def __init__(self, pos: int, message: str, unsupported: bool = False):
        super().__init__(message)
        self.pos = pos
        self.message = message
        self.unsupported = unsupported

    def describe(self, text: str) -> str:
        """Return the message with Prometheus' ``line:column:`` position in ``text``."""
        before = text[: self.pos]
        line = before.count("\n") + 1
        col = self.pos - (before.rfind("\n") + 1) + 1
        if self.unsupported:
            return (
                f"{line}:{col}: {self.message} are not supported by the LINBORG forecast path "
                f"API; use a plain vector selector such as {SELECTOR_EXAMPLE}"
            )
        return f"{line}:{col}: parse error: {self.message}"


@dataclass(frozen=True)
class Matcher:
    """One label matcher: ``name op value``; regular expressions match the whole value."""

    name: str
    op: str  # "=", "!=", "=~" or "!~"
    value: str

    def __post_init__(self):
        if self.op in ("=~", "!~"):
            # RE2, as Prometheus has it: matching takes time linear in the value, so no
            # pattern can make a request backtrack for minutes ("linbo(.*.*)*x" froze Python's
            # re for 19 s and more). Prometheus' "." matches newlines too: (?s).
            import re2

            try:
                pattern = re2.compile("(?s)" + self.value)
            except re2.error as err:
                raise ValueError(f"invalid regular expression {self.value!r}: {err}") from None
            object.__setattr__(self, "_pattern", pattern)

    def matches(self, value: str) -> bool:
        """Return whether a label value (empty string for a missing label) matches."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = self._pattern.fullmatch(value) is not None
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    """A vector selector: all matchers, the metric name among them as ``__name__="..."``."""

    matchers: tuple[Matcher, ...]


@dataclass(frozen=True)
class Scalar:
    """A constant scalar expression, already computed."""

    value: float


_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DURATION_TOKEN = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+(?![a-zA-Z0-9_.])")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
#: Words PromQL reserves; none of them can be a metric name.
_AGGREGATIONS = frozenset(
    [
        "sum",
        "avg",
        "count",
        "min",
        "max",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "count_values",
        "quantile",
    ]
)
_KEYWORDS = _AGGREGATIONS | frozenset(
    [
        "and",
        "or",
        "unless",
        "atan2",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "offset",
    ]
)
_TWO_CHAR = ("==", "!=", "=~", "!~", ">=", "<=")
_COMPARISONS = frozenset(("==", "!=", ">", "<", ">=", "<="))
_SET_OPERATORS = frozenset(("and", "or", "unless", "atan2", "bool", "on", "ignoring"))
_ONE_CHAR = "={}(),[]+-*/%^@<>"


@dataclass(frozen=True)
class _Token:
    kind: str  # ident, number, duration, string, punct, end
    text: str
    pos: int
    value: object = None


def _unquote(text: str, start: int) -> tuple[str, int]:
    """Read the quoted string at ``text[start]``; return its value and the offset after it."""
    quote = text[start]
    i = start + 1
    if quote == "`":
        end = text.find("`", i)
        if end < 0:
            raise ParseError(start, "unterminated raw string")
        return text[i:end], end + 1
    out = []
    while True:
        if i >= len(text) or text[i] == "\n":
            raise ParseError(start, "unterminated quoted string")
        c = text[i]
        if c == quote:
            return "".join(out), i + 1
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(text):
            raise ParseError(start, "unterminated quoted string")
        e = text[i + 1]
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
            i += 2
        elif e == quote:
            out.append(quote)
            i += 2
        elif e in "xuU01234567":
            digits, base = {"x": (2, 16), "u": (4, 16), "U": (8, 16)}.get(e, (3, 8))
            first = i + 1 if base == 8 else i + 2
            code = text[first : first + digits]
            allowed = "01234567" if base == 8 else "0123456789abcdefABCDEF"
            if len(code) != digits or any(ch not in allowed for ch in code):
                raise ParseError(i, f"invalid escape sequence in string: \\{e}{code}")
            n = int(code, base)
            if n > 0x10FFFF or 0xD800 <= n <= 0xDFFF or (base == 8 and n > 255):
                raise ParseError(i, f"invalid escape sequence in string: \\{e}{code}")
            out.append(chr(n))
            i = first + digits
        else:
            raise ParseError(i, f"invalid escape sequence in string: \\{e}")


def tokenize(text: str) -> list[_Token]:
    """Split a query into tokens; the last one has kind ``end``."""
    tokens = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
        elif c in "\"'`":
            value, j = _unquote(text, i)
            tokens.append(_Token("string", text[i:j], i, value))
            i = j
        elif m := _DURATION_TOKEN.match(text, i):
            tokens.append(_Token("duration", m.group(), i))
            i = m.end()
        elif m := _NUMBER.match(text, i):
            j = m.end()
            if j < len(text) and (text[j].isalnum() or text[j] in "_."):
                raise ParseError(i, f"bad number or duration syntax: {text[i : j + 1]!r}")
            word = m.group()
            try:
                value = float(int(word, 16)) if word[:2] in ("0x", "0X") else float(word)
            except OverflowError:
                value = math.inf
            tokens.append(_Token("number", word, i, value))
            i = j
        elif c.isascii() and (c.isalpha() or c in "_:"):
            m = _IDENT.match(text, i)
            tokens.append(_Token("ident", m.group(), i))
            i = m.end()
        elif text[i : i + 2] in _TWO_CHAR:
            tokens.append(_Token("punct", text[i : i + 2], i))
            i += 2
        elif c in _ONE_CHAR:
            tokens.append(_Token("punct", c, i))
            i += 1
        else:
            raise ParseError(i, f"unexpected character: {c!r}")
    tokens.append(_Token("end", "", len(text)))
    return tokens


class _Parser:
    """A recursive-descent parser of the supported subset (no evaluation of arbitrary code)."""

    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def parse(self) -> Selector | Scalar:
        if self.peek().kind == "end":
            raise ParseError(0, "no expression found in input")
        expr = self.additive()
        self.finish_operand(expr, closing=())
        return expr

    def finish_operand(self, expr, closing: tuple[str, ...]) -> None:
        """Check what follows a complete expression: the end, or a closing parenthesis."""
        tok = self.peek()
        if tok.kind == "end" or tok.text in closing:
            return
        if tok.text == "[":
            raise ParseError(tok.pos, "range vectors and subqueries", unsupported=True)
        if tok.text in ("offset", "@"):
            raise ParseError(tok.pos, "offset and @ modifiers", unsupported=True)
        if tok.text in _COMPARISONS and tok.kind == "punct":
            raise ParseError(tok.pos, "comparison operators", unsupported=True)
        if tok.text in _SET_OPERATORS and tok.kind == "ident":
            raise ParseError(tok.pos, "binary operators on vectors", unsupported=True)
        raise ParseError(tok.pos, f"unexpected {_describe(tok)}")

    # Constant arithmetic: + - (lowest), * / %, unary signs, ^ (right-associative, highest).
    def additive(self):
        left = self.multiplicative()
        while self.peek().text in ("+", "-") and self.peek().kind == "punct":
            op = self.take()
            right = self.multiplicative()
            left = _arith(op, left, right)
        return left

    def multiplicative(self):
        left = self.unary()
        while self.peek().text in ("*", "/", "%") and self.peek().kind == "punct":
            op = self.take()
            right = self.unary()
            left = _arith(op, left, right)
        return left

    def unary(self):
        tok = self.peek()
        if tok.kind == "punct" and tok.text in ("+", "-"):
            self.take()
            operand = self.unary()
            if not isinstance(operand, Scalar):
                raise ParseError(tok.pos, "unary operators on vectors", unsupported=True)
            return Scalar(-operand.value if tok.text == "-" else operand.value)
        return self.power()

    def power(self):
        base = self.primary()
        tok = self.peek()
        if tok.kind == "punct" and tok.text == "^":
            self.take()
            return _arith(tok, base, self.unary())
        return base

    def primary(self):
        tok = self.peek()
        if tok.kind == "number":
            self.take()
            return Scalar(tok.value)
        if tok.kind == "string":
            raise ParseError(tok.pos, "string literals", unsupported=True)
        if tok.kind == "duration":
            raise ParseError(tok.pos, f"unexpected duration {tok.text!r}")
        if tok.text == "(":
            self.take()
            if self.peek().text == ")":
                raise ParseError(self.peek().pos, 'unexpected ")"')
            inner = self.additive()
            self.finish_operand(inner, closing=(")",))
            if self.take().text != ")":
                raise ParseError(tok.pos, "unclosed left parenthesis")
            return inner
        if tok.text == "{":
            return self.selector(None)
        if tok.kind == "ident":
            low = tok.text.lower()
            if low in ("inf", "nan"):
                self.take()
                return Scalar(math.inf if low == "inf" else math.nan)
            if self.peek(1).text == "(" or tok.text in _AGGREGATIONS:
                raise ParseError(tok.pos, "functions and aggregations", unsupported=True)
            if tok.text in _KEYWORDS:
                raise ParseError(tok.pos, f"unexpected keyword {tok.text!r}")
            self.take()
            return self.selector(tok)
        raise ParseError(tok.pos, f"unexpected {_describe(tok)}")

    def selector(self, name: _Token | None) -> Selector:
        start = self.peek().pos if name is None else name.pos
        matchers = []
        if self.peek().text == "{":
            self.take()
            matchers = self.matchers()
            if name is not None and any(m.name == "__name__" for m in matchers):
                raise ParseError(start, f"metric name must not be set twice: {name.text!r}")
        if name is not None:
            matchers.insert(0, Matcher("__name__", "=", name.text))
        if all(m.matches("") for m in matchers):
            raise ParseError(start, "vector selector must contain at least one non-empty matcher")
        return Selector(tuple(matchers))

    def matchers(self) -> list[Matcher]:
        out = []
        while True:
            tok = self.take()
            if tok.text == "}" and tok.kind == "punct":
                return out
            if tok.kind != "ident" or not _LABEL_NAME.match(tok.text):
                raise ParseError(tok.pos, f"unexpected {_describe(tok)} in label matching")
            op = self.take()
            if op.kind != "punct" or op.text not in ("=", "!=", "=~", "!~"):
                raise ParseError(
                    op.pos, f"unexpected {_describe(op)} in label matching, expected an operator"
                )
            value = self.take()
            if value.kind != "string":
                raise ParseError(
                    value.pos, f"unexpected {_describe(value)} in label matching, expected string"
                )
            try:
                out.append(Matcher(tok.text, op.text, value.value))
            except ValueError as err:
                raise ParseError(value.pos, str(err)) from None
            after = self.take()
            if after.text == "}" and after.kind == "punct":
                return out
            if after.text != ",":
                raise ParseError(
                    after.pos, f"unexpected {_describe(after)} in label matching, expected , or }}"
                )


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of input"
    return f"{tok.kind} {tok.text!r}" if tok.kind != "punct" else repr(tok.text)


def _arith(op: _Token, left, right) -> Scalar:
    """Compute constant arithmetic like PromQL (IEEE floats: 1/0 is +Inf, 0/0 is NaN)."""
    if not (isinstance(left, Scalar) and isinstance(right, Scalar)):
        raise ParseError(op.pos, "binary operators on vectors", unsupported=True)
    a, b = left.value, right.value
    if op.text == "+":
        return Scalar(a + b)
    if op.text == "-":
        return Scalar(a - b)
    if op.text == "*":
        return Scalar(a * b)
    if op.text == "/":
        if b != 0:
            return Scalar(a / b)
        if a == 0 or math.isnan(a):
            return Scalar(math.nan)
        return Scalar(math.copysign(math.inf, a) * math.copysign(1, b))
    if op.text == "%":
        return Scalar(math.nan if b == 0 or math.isinf(a) else math.fmod(a, b))
    try:
        return Scalar(math.pow(a, b))
    except OverflowError:
        return Scalar(math.inf)
    except ValueError:
        return Scalar(math.nan)


def parse_query(text: str) -> Selector | Scalar:
    """Parse a query of the supported subset; raise ParseError with a position otherwise."""
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise ParseError(0, "expression nested too deeply") from None


def parse_selector(text: str) -> Selector:
    """Parse a series selector (as in ``match[]``); raise ParseError otherwise."""
    expr = parse_query(text)
    if not isinstance(expr, Selector):
        raise ParseError(0, "expected a vector selector")
    return expr

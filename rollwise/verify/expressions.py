"""Arithmetic expressions from model output, parsed and evaluated without eval or sympy.

Countdown and the 24 game are scored by evaluating the model's expression. reasoning-gym hands it to
sympy's parse_expr, which runs Python code ; this is the replacement: a recursive-descent
parser over integers, + - * / and parentheses with bounded length, nesting depth and literal size,
evaluated exactly with Fractions. Anything outside that grammar raises ExpressionError (a ValueError).
`answer_expression` takes the expression out of an answer (a sentence-ending period is dropped).
"""

from __future__ import annotations

from fractions import Fraction

MAX_EXPR_CHARS = 256
MAX_DEPTH = 32
MAX_LITERAL_DIGITS = 12


class ExpressionError(ValueError):
    """The text is outside the expression grammar (or divides by zero)."""


def _tokens(text: str) -> list[str]:
    """Integers, `+ - * / ( )`; whitespace skipped; anything else (letters, `**`, `.`, `=`) refused."""
    out, digits = [], []
    for ch in text:
        if "0" <= ch <= "9":
            digits.append(ch)
            continue
        if digits:
            out.append("".join(digits))
            digits = []
        if ch in "+-*/()":
            out.append(ch)
        elif ch not in " \t\r\n":
            raise ExpressionError(f"character {ch!r}")
    if digits:
        out.append("".join(digits))
    if any(t.isdigit() and len(t) > MAX_LITERAL_DIGITS for t in out):
        raise ExpressionError("number too long")
    if any(len(t) > 1 and t[0] == "0" and t.isdigit() for t in out):
        raise ExpressionError("leading zero")  # as in reasoning-gym: Python (and sympy) refuse `06`
    return out


class _Parser:
    """expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*;
    factor := ('+'|'-') factor | '(' expr ')' | integer.  Exact values over Fractions."""

    def __init__(self, tokens: list[str]):
        self.tokens, self.pos, self.numbers = tokens, 0, []

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise ExpressionError("unexpected end")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expr(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self.peek() in ("+", "-"):
            value = value + self.term(depth) if self.take() == "+" else value - self.term(depth)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.factor(depth)
        while self.peek() in ("*", "/"):
            op, rhs = self.take(), self.factor(depth)
            if op == "/" and rhs == 0:
                raise ExpressionError("division by zero")
            value = value * rhs if op == "*" else value / rhs
        return value

    def factor(self, depth: int) -> Fraction:
        if depth > MAX_DEPTH:
            raise ExpressionError("nested too deeply")
        tok = self.take()
        if tok in ("+", "-"):
            value = self.factor(depth + 1)
            return value if tok == "+" else -value
        if tok == "(":
            value = self.expr(depth + 1)
            if self.take() != ")":
                raise ExpressionError("unbalanced parenthesis")
            return value
        if tok.isdigit():
            self.numbers.append(int(tok))
            return Fraction(int(tok))
        raise ExpressionError(f"unexpected {tok!r}")


def answer_expression(answer: str) -> str:
    """The expression in an answer: surrounding whitespace and one sentence-ending period removed.

    Models end a sentence after the expression (`(6 + 4) * 3.`), which reasoning-gym accepts because
    sympy reads `3.` as the number 3.0. Here the period is dropped wherever it stands, after `)` or a
    space too (reasoning-gym refuses those two); `3..` keeps a period and is refused, as there.
    """
    text = answer.strip()
    return text[:-1].rstrip() if text.endswith(".") else text


def evaluate_expression(text: str) -> tuple[Fraction, list[int]]:
    """The exact value of an integer arithmetic expression and the integers it uses, in order.

    Raises ValueError for anything outside the grammar: longer than MAX_EXPR_CHARS, nested deeper
    than MAX_DEPTH, literals over MAX_LITERAL_DIGITS digits or with a leading zero, exponents, names,
    decimals, `=`.
    Bounded by construction: at most 256 characters of + - * / over 12-digit integers.
    """
    if len(text) > MAX_EXPR_CHARS:
        raise ExpressionError("expression too long")
    parser = _Parser(_tokens(text))
    value = parser.expr(0)
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()!r}")
    return value, parser.numbers

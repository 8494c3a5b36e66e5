"""Final answers of GSM8K-style solutions, and numeric comparison of two answers.

GSM8K solutions end with a line ``#### <number>``; model generations may not, so
`final_answer` falls back to the last number in the text. Numbers are compared exactly
as rationals (`fractions.Fraction`): ``"1,000"``, ``"1000.0"``, ``"$1000"`` and
``"1000"`` are the same answer, ``"3/4"`` equals ``"0.75"``, ``"0.333"`` is not ``"1/3"``.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["answers_match", "final_answer", "parse_number"]

ANSWER_MARKER = "####"

# A sign only where it cannot be a binary minus ("10-5" is 10 and 5, not 10 and -5);
# thousands separators only in groups of three ("1,2,3" is a list, "1,234" a number).
_NUMBER = re.compile(
    r"(?P<sign>(?<![\w)\]])[-+−])?\$?"
    r"(?P<int>\d{1,3}(?:,\d{3})+|\d+)?"
    r"(?P<frac>\.\d+)?"
    r"(?:/(?P<den>\d+(?:\.\d+)?)(?![\d,]))?"
)


def _matches(text: str):
    for match in _NUMBER.finditer(text):
        if match.group("int") is None and match.group("frac") is None:
            continue  # a bare sign or "$"
        yield match


def _canonical(match: re.Match) -> str:
    sign = "-" if match.group("sign") in ("-", "−") else ""
    number = (match.group("int") or "0").replace(",", "") + (match.group("frac") or "")
    den = match.group("den")
    if den is not None and Fraction(den) != 0:
        number += "/" + den
    return sign + number


def final_answer(text: str) -> str | None:
    """Returns the final numeric answer of a solution, as a plain number string.

    The number after the last ``####`` when one follows it, else the last number in
    the text. Formatting is removed (``"$1,000"`` → ``"1000"``, ``"−3"`` → ``"-3"``); the
    digits are otherwise kept as written (``"1000.0"`` stays ``"1000.0"``). A fraction
    ``"3/4"`` is one number; ``"10-5"`` is two (10 and 5).

    Args:
        text: A gold solution or a model generation.

    Returns:
        The number as a string without sign noise, ``$`` or thousands separators, or
        None when the text holds no number.
    """
    _, marker, after = text.rpartition(ANSWER_MARKER)
    if marker:
        first = next(_matches(after), None)
        if first is not None:
            return _canonical(first)
    last = None
    for match in _matches(text):
        last = match
    return None if last is None else _canonical(last)


def parse_number(text: str | int | float | Fraction) -> Fraction | None:
    """Returns the exact value of the final answer in ``text`` (see `final_answer`).

    Args:
        text: A solution, a number string such as ``"$1,000"`` or ``"-3/4"``, or a number.

    Returns:
        The value as a `Fraction` (floats convert exactly from their decimal text), or
        None when there is no number.
    """
    if isinstance(text, bool):
        raise TypeError(f"expected a number or a string, got {text!r}")
    if isinstance(text, (int, Fraction)):
        return Fraction(text)
    if isinstance(text, float):
        text = repr(text)
    answer = final_answer(text)
    if answer is None:
        return None
    num, _, den = answer.partition("/")
    return Fraction(num) / Fraction(den) if den else Fraction(num)


def answers_match(pred: str | int | float | Fraction | None, gold: str | int | float | Fraction) -> bool:
    """Whether a predicted answer equals the gold answer as a number.

    Both sides go through `final_answer`, so either may be a full solution (``"...
    #### 72"``), a generation or a bare number; ``"1,000"``, ``"1000.0"`` and ``"$1000"``
    all match ``1000``, ``"3/4"`` matches ``0.75``. Comparison is exact (rationals), as
    GSM8K's answers are integers and short decimals.

    Args:
        pred: The model's answer or generation; None (nothing generated) never matches.
        gold: The reference answer or solution.

    Returns:
        True when both hold a number and the numbers are equal.
    """
    if pred is None:
        return False
    pred_value, gold_value = parse_number(pred), parse_number(gold)
    return pred_value is not None and gold_value is not None and pred_value == gold_value

"""final_answer and answers_match: GSM8K's formats, generations, and the real train set."""

import json
from fractions import Fraction

import pytest

from qstudy.data import answers_match, final_answer, parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,200", "1200"),
        ("#### -5", "-5"),
        ("#### $18.00", "18.00"),
        ("#### 3/4", "3/4"),
        ("The total is $1,000.", "1000"),  # no marker: last number; sentence dot is not a decimal
        ("First 3, then 4. So the answer is 12", "12"),
        ("It costs 5 dollars #### 7 and then 9", "7"),  # the number right after the marker
        ("Answer: 10 ####", "10"),  # marker without a number: last number
        ("10-5 = 5", "5"),  # a binary minus is not a sign
        ("the profit is 10 - 3", "3"),
        ("temperature fell to −3 degrees", "-3"),
        ("1,2,3", "3"),  # a list, not thousands
        ("half of it, .5", "0.5"),
        ("50% of them", "50"),
        ("no digits here", None),
        ("", None),
    ],
)
def test_final_answer(text, expected):
    assert final_answer(text) == expected


@pytest.mark.parametrize(
    "pred", ["1,000", "1000.0", "$1000", "1000", "#### 1,000.00", "so she pays $1,000.", 1000, 1000.0]
)
def test_formats_of_one_thousand_match(pred):
    assert answers_match(pred, "1000")
    assert answers_match(pred, 1000)


@pytest.mark.parametrize(
    ("pred", "gold", "expected"),
    [
        ("-7", "#### -7", True),
        ("7", "#### -7", False),
        ("3/4", "0.75", True),
        ("0.333", "1/3", False),  # exact comparison: no tolerance
        ("2.50", "2.5", True),
        ("1001", "1000", False),
        ("I don't know", "5", False),
        (None, "5", False),
        ("5", "no number", False),
    ],
)
def test_answers_match(pred, gold, expected):
    assert answers_match(pred, gold) is expected


def test_parse_number_is_exact():
    assert parse_number("-1,234.5") == Fraction(-2469, 2)
    assert parse_number("3/4") == Fraction(3, 4)
    assert parse_number(0.1) == Fraction(1, 10)  # the float's decimal text, not its binary value
    assert parse_number("none") is None
    with pytest.raises(TypeError, match="expected a number or a string, got True"):
        parse_number(True)


def test_every_real_gsm8k_train_answer_parses_and_matches_itself(gsm8k_train_path):
    n_checked = 0
    with gsm8k_train_path.open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            answer = json.loads(line)["answer"]
            written = answer.rsplit("####", 1)[1].strip()
            parsed = final_answer(answer)
            assert parsed is not None, f"line {line_no}: no final answer in {answer[-60:]!r}"
            assert parsed == written.replace(",", ""), f"line {line_no}: parsed {parsed!r}, written {written!r}"
            assert answers_match(answer, answer) and answers_match(written, answer), f"line {line_no}"
            n_checked += 1
    assert n_checked == 7473

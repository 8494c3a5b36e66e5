"""synthesize_gsm8k: seeded, every template used, arithmetic and format checked."""

import re
from fractions import Fraction

import pytest

from qstudy.data import SYNTHETIC_TEMPLATES, answers_match, final_answer, load_gsm8k, save_gsm8k_jsonl, synthesize_gsm8k

_CALCULATION = re.compile(r"<<([^=<>]+)=([^<>]+)>>")


def test_same_seed_same_problems_other_seed_other_problems():
    assert synthesize_gsm8k(30, seed=5) == synthesize_gsm8k(30, seed=5)
    assert synthesize_gsm8k(30, seed=5) != synthesize_gsm8k(30, seed=6)
    assert synthesize_gsm8k(10, seed=5) == synthesize_gsm8k(30, seed=5)[:10]


def test_pinned_first_problem_of_seed_0():
    """Pins the stream: a change here changes every smoke study's data."""
    first = synthesize_gsm8k(1, seed=0)[0]
    assert first.answer.endswith("#### " + final_answer(first.answer))
    assert first.question.startswith("Ken sold 37 pencils in January, and then sold 5 times as many pencils in March")
    assert final_answer(first.answer) == "222"


def test_every_calculation_is_right_and_ends_in_the_final_answer():
    examples = synthesize_gsm8k(600, seed=1)
    for example in examples:
        calculations = _CALCULATION.findall(example.answer)
        assert len(calculations) >= 2, example.answer  # multi-step
        for expression, result in calculations:
            assert re.fullmatch(r"[\d+\-*/ ]+", expression), expression
            assert Fraction(eval(expression)) == Fraction(result), f"{expression} != {result}"  # noqa: S307 (digits and + - * / only)
            assert int(result) >= 0
        assert example.answer.splitlines()[-1] == f"#### {calculations[-1][1]}"
        assert answers_match(example.answer, calculations[-1][1])


def test_all_templates_are_used_and_questions_vary():
    examples = synthesize_gsm8k(6 * 20, seed=2)
    assert len(SYNTHETIC_TEMPLATES) >= 5
    openings = {e.question.split()[1] for e in examples[:6]}  # second word differs by template
    assert len(openings) >= 4
    assert len({e.question for e in examples}) == len(examples)


def test_round_trips_through_the_jsonl_loader(tmp_path):
    examples = synthesize_gsm8k(25, seed=3)
    path = save_gsm8k_jsonl(examples, tmp_path / "sub" / "train.jsonl")
    assert load_gsm8k(path) == examples


def test_bad_count_is_refused():
    with pytest.raises(ValueError, match="n_examples must be a non-negative integer, got n_examples=-1"):
        synthesize_gsm8k(-1)

"""Offline GSM8K-format word problems: seeded, several templates, worked answers.

For the smoke study and tests, where the real GSM8K is not at hand. Each problem is a
short story with 2–3 arithmetic steps; the answer shows each step the way GSM8K does,
with calculator annotations ``<<48/2=24>>``, and ends with ``#### <integer>``. All
quantities are chosen so every intermediate result is a non-negative integer. The same
``seed`` gives the same problems on every machine (Python's `random.Random`, whose
integer and choice streams are stable across Python versions).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from qstudy.data._gsm8k import GSM8KExample

__all__ = ["SYNTHETIC_TEMPLATES", "synthesize_gsm8k"]

_NAMES = ["Natalia", "Weng", "Betty", "Julie", "James", "Albert", "Ken", "Alexis", "Tina", "Marco", "Priya", "Omar"]
_ITEMS = ["clips", "apples", "stickers", "books", "cupcakes", "marbles", "pencils", "cookies"]
_MONTHS = ["January", "February", "March", "April", "May", "June"]


def _sold_more(rng: random.Random) -> GSM8KExample:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    month1, month2 = (_MONTHS[i] for i in sorted(rng.sample(range(len(_MONTHS)), 2)))
    first, factor = rng.randint(5, 60), rng.randint(2, 5)
    second = first * factor
    total = first + second
    question = (
        f"{name} sold {first} {item} in {month1}, and then sold {factor} times as many {item} in {month2}. "
        f"How many {item} did {name} sell in {month1} and {month2} altogether?"
    )
    answer = (
        f"In {month2} {name} sold {first}*{factor} = <<{first}*{factor}={second}>>{second} {item}.\n"
        f"Altogether {name} sold {first}+{second} = <<{first}+{second}={total}>>{total} {item}.\n"
        f"#### {total}"
    )
    return GSM8KExample(question, answer)


def _wages(rng: random.Random) -> GSM8KExample:
    name = rng.choice(_NAMES)
    rate, hours, days = rng.randint(8, 30), rng.randint(2, 9), rng.randint(2, 6)
    daily = rate * hours
    total = daily * days
    question = f"{name} earns ${rate} an hour. {name} works {hours} hours a day for {days} days. How much money does {name} earn?"
    answer = (
        f"Each day {name} earns {rate}*{hours} = $<<{rate}*{hours}={daily}>>{daily}.\n"
        f"In {days} days {name} earns {daily}*{days} = $<<{daily}*{days}={total}>>{total}.\n"
        f"#### {total}"
    )
    return GSM8KExample(question, answer)


def _change(rng: random.Random) -> GSM8KExample:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    count, price = rng.randint(2, 12), rng.randint(1, 9)
    cost = count * price
    bill = next(b for b in (10, 20, 50, 100, 200) if b >= cost)
    change = bill - cost
    question = (
        f"{name} buys {count} {item} at ${price} each and pays with a ${bill} bill. How much change does {name} get?"
    )
    answer = (
        f"The {item} cost {count}*{price} = $<<{count}*{price}={cost}>>{cost}.\n"
        f"{name} gets {bill}-{cost} = $<<{bill}-{cost}={change}>>{change} in change.\n"
        f"#### {change}"
    )
    return GSM8KExample(question, answer)


def _share(rng: random.Random) -> GSM8KExample:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    friends, each, kept, eaten = rng.randint(2, 8), rng.randint(2, 9), rng.randint(1, 10), rng.randint(1, 5)
    given = friends * each
    total = given + kept
    left = kept - min(eaten, kept)
    eaten = kept - left
    question = (
        f"{name} has {total} {item}. {name} gives {each} {item} to each of {friends} friends, "
        f"and then uses {eaten} of the rest. How many {item} does {name} have left?"
    )
    answer = (
        f"{name} gives away {friends}*{each} = <<{friends}*{each}={given}>>{given} {item}.\n"
        f"That leaves {total}-{given} = <<{total}-{given}={kept}>>{kept} {item}.\n"
        f"After using {eaten}, {name} has {kept}-{eaten} = <<{kept}-{eaten}={left}>>{left} {item} left.\n"
        f"#### {left}"
    )
    return GSM8KExample(question, answer)


def _ages(rng: random.Random) -> GSM8KExample:
    younger, older = rng.sample(_NAMES, 2)
    age, extra, years = rng.randint(3, 20), rng.randint(2, 10), rng.randint(2, 15)
    double = 2 * age
    older_age = double + extra
    future = older_age + years
    question = (
        f"{younger} is {age} years old. {older} is {extra} years older than twice {younger}'s age. "
        f"How old will {older} be in {years} years?"
    )
    answer = (
        f"Twice {younger}'s age is 2*{age} = <<2*{age}={double}>>{double} years.\n"
        f"{older} is {double}+{extra} = <<{double}+{extra}={older_age}>>{older_age} years old.\n"
        f"In {years} years {older} will be {older_age}+{years} = <<{older_age}+{years}={future}>>{future}.\n"
        f"#### {future}"
    )
    return GSM8KExample(question, answer)


def _discount(rng: random.Random) -> GSM8KExample:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    percent = rng.choice([10, 20, 25, 50])
    price = rng.randint(1, 20) * (100 // percent)  # the discount is a whole number of dollars
    count = rng.randint(2, 6)
    off = price * percent // 100
    sale = price - off
    total = sale * count
    question = (
        f"A box of {item} costs ${price}. The shop takes {percent}% off every box. "
        f"How much does {name} pay for {count} boxes?"
    )
    answer = (
        f"The discount is {price}*{percent}/100 = $<<{price}*{percent}/100={off}>>{off} a box.\n"
        f"A box costs {price}-{off} = $<<{price}-{off}={sale}>>{sale}.\n"
        f"{count} boxes cost {sale}*{count} = $<<{sale}*{count}={total}>>{total}.\n"
        f"#### {total}"
    )
    return GSM8KExample(question, answer)


SYNTHETIC_TEMPLATES: dict[str, Callable[[random.Random], GSM8KExample]] = {
    "sold_more": _sold_more,
    "wages": _wages,
    "change": _change,
    "share": _share,
    "ages": _ages,
    "discount": _discount,
}
"""The problem templates by name; `synthesize_gsm8k` cycles through them in this order."""


def synthesize_gsm8k(n_examples: int, *, seed: int = 0) -> list[GSM8KExample]:
    """Generates GSM8K-format word problems with worked answers ending ``#### N``.

    Templates are used in turn (problem i uses template ``i % 6``), each with its own
    random quantities, names and items.

    Args:
        n_examples: How many problems.
        seed: Same seed, same problems.

    Returns:
        The problems; each answer's `final_answer` is its arithmetic result.
    """
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 0:
        raise ValueError(f"n_examples must be a non-negative integer, got n_examples={n_examples!r}")
    rng = random.Random(seed)
    templates = list(SYNTHETIC_TEMPLATES.values())
    return [templates[i % len(templates)](rng) for i in range(n_examples)]

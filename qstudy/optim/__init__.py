"""The superpositional optimizer. Depends on torch only: use it in any torch loop."""

from qstudy.optim._compile_payoff import compile_pays_off
from qstudy.optim._deepspeed import bind_deepspeed
from qstudy.optim._layout import Layout, Segment
from qstudy.optim._superpositional import RESPONSES, SCOPES, SuperpositionalAdamW

__all__ = ["SuperpositionalAdamW", "bind_deepspeed", "compile_pays_off", "Layout", "Segment", "RESPONSES", "SCOPES"]

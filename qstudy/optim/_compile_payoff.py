"""Whether ``compile_step=True`` pays for its compilation within a run of known length.

A fresh process pays the compile of the step once, on its first step; from then on each
step saves (eager − compiled) time, which grows with the elements stepped. A trial of a
tiny model for a few hundred steps never earns back even a warm-cache compile; a large
model earns it back in a few steps. The constants are measured on the 2-core CPU dev
machine, one torch thread (benchmarks/RESULTS.md, "When compiling the optimizer step
pays off"), and are chosen to err towards compiling: a saving per element above every
measurement, a compile below every warm-cache measurement. More threads or a GPU make
both paths faster, so the saving here is an overestimate there, which again errs
towards compiling (big models keep the fast path).
"""

from __future__ import annotations

import inspect
from typing import Any

from qstudy.optim._superpositional import SuperpositionalAdamW

__all__ = ["compile_pays_off"]

# response="sin", scope="all": seconds the compiled step saves per element per step over
# the eager one. Measured 1.2-7.3 ns from 1e6 to 1e8 elements in 1, 19 and 191 tensors
# (under 1.4 ns at 1e5, where the per-call overheads are as large as the work); 8 ns is
# above all of them.
SIN_SAVED_S_PER_ELEMENT = 8e-9
# ... and the first step's extra seconds in a fresh process with a warm inductor cache:
# 3.7-4.1 s for one flat tensor (one graph, ZeRO's case), 6.9-9.3 s for 19-191 tensors
# (up to four graphs); 15-44 s cold.
SIN_WARM_COMPILE_S = 3.5
# response="circuit" (4 qubits, depth 2, one flat tensor): its compiled kernel saves
# 405-775 ns per element per step over the statevector simulator (1e5-1e7 elements), for
# 4.5-5.2 s warm (39-50 s cold), once per (n_qubits, depth).
CIRCUIT_SAVED_S_PER_ELEMENT = 8e-7
CIRCUIT_WARM_COMPILE_S = 4.0


def compile_pays_off(
    numel: int,
    steps: int,
    *,
    response: str = "sin",
    scope: str = "leading",
    circuit_depth: int = 0,
    **optimizer_kwargs: Any,
) -> bool:
    """True when ``SuperpositionalAdamW(..., compile_step=True)`` should be faster over
    ``steps`` steps of ``numel`` elements than ``compile_step=False``, compile included:
    ``steps × numel × saved_s_per_element > warm_compile_s``.

    Only ``response="sin", scope="all"`` (the fused step) and ``response="circuit",
    scope="all"`` at depth >= 1 (the unrolled circuit kernel) compile anything; for
    every other configuration the flag changes nothing and this returns True.

    Args:
        numel: trainable elements the optimizer steps (all ranks': an overestimate of
            one rank's saving under ZeRO, which errs towards compiling).
        steps: optimizer steps of the run.
        response, scope, circuit_depth: the optimizer's arguments of those names.
        **optimizer_kwargs: the optimizer's other arguments (lr, betas, ...), so that a
            config's keyword arguments pass through whole; they do not matter here.

    Raises:
        TypeError: a keyword that is no argument of SuperpositionalAdamW.
        ValueError: a negative ``numel`` or ``steps``.
    """
    unknown = set(optimizer_kwargs) - set(inspect.signature(SuperpositionalAdamW).parameters)
    if unknown:
        raise TypeError(f"compile_pays_off got arguments SuperpositionalAdamW does not take: {sorted(unknown)}")
    if numel < 0 or steps < 0:
        raise ValueError(f"numel and steps must be >= 0, got numel={numel}, steps={steps}")
    if scope != "all":
        return True
    if response == "sin":
        saved, compile_s = SIN_SAVED_S_PER_ELEMENT, SIN_WARM_COMPILE_S
    elif response == "circuit" and circuit_depth >= 1:
        saved, compile_s = CIRCUIT_SAVED_S_PER_ELEMENT, CIRCUIT_WARM_COMPILE_S
    else:
        return True
    return steps * numel * saved > compile_s

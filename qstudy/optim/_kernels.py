"""The fused step for ``response="sin", scope="all"``: Q, AdamW and the perturbation in
one pass over memory, compiled with ``torch.compile``.

Done eagerly, the perturbed step costs ~7x torch's fused AdamW on CPU (sin alone is
slower than the whole Adam update, and Q needs its own buffer and two extra passes). One
compiled pass with a polynomial sin(πx), one call per up to 8 tensors, costs ~1.1-1.2x
(benchmarks/RESULTS.md).
"""

from __future__ import annotations

import math
import threading
import warnings

import torch

__all__ = ["sinpi", "fused_sin_adamw_step", "MAX_TENSORS_PER_CALL"]

# Taylor coefficients of sin(πr) for |r| <= 1/2: the degree-11 truncation error is below
# 3e-7, under fp32's rounding of the result's magnitude (see tests/unit/optim).
_SINPI = tuple((-1) ** k * math.pi ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(6))


def sinpi(x: torch.Tensor) -> torch.Tensor:
    """sin(πx) by range reduction to r = x - round(x) and an odd polynomial in r.

    Elementwise arithmetic only, so the compiler fuses it into the step's single loop
    (``torch.sin`` does not vectorise as well inside inductor's CPU kernels).
    """
    k = torch.round(x)
    r = x - k
    r2 = r * r
    acc = r2 * _SINPI[5] + _SINPI[4]
    for c in reversed(_SINPI[:4]):
        acc = acc * r2 + c
    parity = k - 2.0 * torch.floor(0.5 * k)  # 0 or 1: sin(π(k + r)) = (-1)^k sin(πr)
    return acc * r * (1.0 - 2.0 * parity)


def _step(param, grad, exp_avg, exp_avg_sq, coef):
    # coef: [1 - lr·wd, lr / bc1, 1 / sqrt(bc2), eps, lr·λ, 1 - β1, β2, 1 - β2], computed
    # once per call outside: inside the loop they would be recomputed per element.
    decay, step_size, inv_bc2_sqrt, eps, lr_lam, one_minus_beta1, beta2, one_minus_beta2 = coef.unbind(0)
    theta = param.float()
    g = grad.float()
    q = sinpi(theta) * g  # Q from θ_t, before the update
    m = exp_avg.float() * (1.0 - one_minus_beta1) + one_minus_beta1 * g  # lerp, without its branch
    v = exp_avg_sq.float() * beta2 + one_minus_beta2 * g * g
    denom = v.sqrt() * inv_bc2_sqrt + eps
    param.copy_(theta * decay - step_size * m / denom - lr_lam * q)
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)


def _step_tensors(params, grads, exp_avgs, exp_avg_sqs, coef):
    # A loop over the list inside one compiled graph: one guard check and one call into
    # the compiled code for the whole list, instead of one per tensor (~0.05-0.2 ms each
    # on CPU, as much as the step of a 1M-element tensor).
    for param, grad, exp_avg, exp_avg_sq in zip(params, grads, exp_avgs, exp_avg_sqs):
        _step(param, grad, exp_avg, exp_avg_sq, coef)


# Most tensors one compiled call steps. Dynamo specialises a graph on the list's length,
# so lists are cut into chunks of a power of two up to this: at most four graphs
# (1, 2, 4, 8 tensors) serve any number of tensors. 8 measured best on CPU (100M
# parameters in 191 tensors: 4 -> 0.89x, 8 -> 0.78x, 16 -> 0.76x the per-tensor time;
# 16 doubles the compile time, ~15 s, for little more).
MAX_TENSORS_PER_CALL = 8

_compiled = None
_compile_failed = False
_lock = threading.Lock()


def fused_sin_adamw_step(params, grads, exp_avgs, exp_avg_sqs, coef) -> int:
    """Runs the compiled step in place on lists of 1-D tensors that share ``coef``.

    Returns how many tensors it stepped: all of them, or (once warning why) the leading
    ones stepped before ``torch.compile`` failed here, so the caller steps the rest eagerly.
    """
    global _compiled, _compile_failed
    if _compile_failed:
        return 0
    with _lock:
        if _compiled is None:
            _compiled = torch.compile(_step_tensors, dynamic=True, fullgraph=True)
    done = 0
    while done < len(params):
        size = MAX_TENSORS_PER_CALL
        while size > len(params) - done:
            size //= 2
        chunk = slice(done, done + size)
        try:
            _compiled(params[chunk], grads[chunk], exp_avgs[chunk], exp_avg_sqs[chunk], coef)
        except Exception as err:  # a missing C++ compiler or Triton, an unsupported device
            _compile_failed = True
            warnings.warn(
                f"SuperpositionalAdamW: torch.compile of the fused sin step failed ({type(err).__name__}: "
                f"{err}); using the eager step, which is several times slower.",
                RuntimeWarning,
                stacklevel=3,
            )
            return done
        done += size
    return done

"""Exact Fourier series of the attention response (docs/design.md §3).

s enters the circuit through n·d gates R_Y(s + a), each e^{∓is/2} linear in the state,
so the amplitude sum is Σ_λ c_λ e^{iλs} with λ ∈ {-nd/2, …, nd/2} (nd+1 frequencies,
Schuld, Sweke, Meyer 2021). Φ = Re(…) is therefore a real trigonometric polynomial with
exactly nd+1 real degrees of freedom in t = ω·s (ω = 1 when nd is even, ½ when odd):

    Φ(s) = Σ_{k∈K} α_k cos(k t) + β_k sin(k t)

nd+1 samples at s_j = 2πj/(nd+1) determine α, β exactly (the sample matrix is orthogonal
up to scale). Evaluation uses Clenshaw's recurrence on x = cos t (Σ α_k T_k(x) and
sin t · Σ β_k U_{k-1}(x)): two transcendental calls and ~4 fused ops per degree per score.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

__all__ = ["evaluate_series", "fourier_layout", "gated_response", "sample_points", "series_from_samples"]


@functools.lru_cache(maxsize=64)
def fourier_layout(n_qubits: int, depth: int) -> tuple[float, int, tuple[int, ...]]:
    """(ω, K, frequencies k in units of t = ω·s) of Φ for an (n, d) circuit."""
    nd = n_qubits * depth
    if nd % 2 == 0:
        return 1.0, nd // 2, tuple(range(nd // 2 + 1))
    return 0.5, nd, tuple(range(1, nd + 1, 2))


@functools.lru_cache(maxsize=64)
def _sample_inverse(n_qubits: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample points [N] and the map [2(K+1), N] from samples to (α_0..α_K, β_0..β_K)."""
    omega, degree, freqs = fourier_layout(n_qubits, depth)
    n_points = n_qubits * depth + 1
    points = 2 * math.pi * np.arange(n_points) / n_points
    columns = [("cos", k) for k in freqs] + [("sin", k) for k in freqs if k > 0]
    design = np.stack(
        [np.cos(k * omega * points) if kind == "cos" else np.sin(k * omega * points) for kind, k in columns],
        axis=1,
    )  # [N, N]
    solve = np.linalg.solve(design, np.eye(n_points))  # coefficients = solve @ samples
    full = np.zeros((2 * (degree + 1), n_points))
    for row, (kind, k) in enumerate(columns):
        full[k if kind == "cos" else degree + 1 + k] = solve[row]
    return points, full


def sample_points(n_qubits: int, depth: int) -> torch.Tensor:
    """The nd+1 scores at which the circuit is simulated, float64."""
    return torch.as_tensor(_sample_inverse(n_qubits, depth)[0])


def series_from_samples(samples: torch.Tensor, n_qubits: int, depth: int) -> torch.Tensor:
    """Series coefficients [2, K+1] (row 0: α_k of cos, row 1: β_k of sin) from Φ(s_j) [N]."""
    full = torch.as_tensor(_sample_inverse(n_qubits, depth)[1], device=samples.device)
    return (full @ samples.to(torch.float64)).reshape(2, -1)


def evaluate_series(s: torch.Tensor, coefficients: torch.Tensor, omega: float) -> torch.Tensor:
    """Φ(s) elementwise from [2, K+1] coefficients; plain differentiable torch ops.

    Scores must be finite (the caller masks after adding γΦ(s)).
    """
    alpha, beta = coefficients.to(s.dtype).unbind(0)
    degree = alpha.shape[0] - 1
    t = s * omega if omega != 1.0 else s
    x = torch.cos(t)
    two_x = 2 * x
    # Clenshaw, from the top degree down: cos series in T_k, sin series in U_{k-1}.
    cos_b1 = cos_b2 = sin_b1 = sin_b2 = None
    for k in range(degree, 0, -1):
        cos_b = (
            alpha[k]
            if cos_b1 is None
            else (alpha[k] + two_x * cos_b1 if cos_b2 is None else alpha[k] + two_x * cos_b1 - cos_b2)
        )
        sin_b = (
            beta[k]
            if sin_b1 is None
            else (beta[k] + two_x * sin_b1 if sin_b2 is None else beta[k] + two_x * sin_b1 - sin_b2)
        )
        cos_b2, cos_b1 = cos_b1, cos_b
        sin_b2, sin_b1 = sin_b1, sin_b
    cos_sum = alpha[0] + x * cos_b1 - (cos_b2 if cos_b2 is not None else 0.0)
    return cos_sum + torch.sin(t) * sin_b1


class _GatedResponse(torch.autograd.Function):
    """logits = s + γ_h·Φ(s) for scores [b, heads, q, k], with a hand-written backward.

    Autograd through `evaluate_series` recomputes cos/sin in several passes; here the
    forward keeps x = cos t and y = sin t, and the backward gets ∂/∂s, ∂/∂γ and ∂/∂series
    from per-head moments M_k = Σ g·T_k(x), N_k = Σ g·y·U_{k-1}(x) (one set serves both
    the gate and the coefficients). Under torch.compile it fuses into a few passes.
    """

    @staticmethod
    def forward(ctx, scores, series, gate, omega):
        alpha, beta = series.to(scores.dtype).unbind(0)
        t = scores * omega if omega != 1.0 else scores
        x, y = torch.cos(t), torch.sin(t)
        two_x = 2 * x
        cos_b1 = cos_b2 = sin_b1 = sin_b2 = 0.0
        for k in range(alpha.shape[0] - 1, 0, -1):  # Clenshaw, as in evaluate_series
            cos_b1, cos_b2 = alpha[k] + two_x * cos_b1 - cos_b2, cos_b1
            sin_b1, sin_b2 = beta[k] + two_x * sin_b1 - sin_b2, sin_b1
        phi = alpha[0] + x * cos_b1 - cos_b2 + y * sin_b1
        ctx.save_for_backward(x, y, series, gate)
        ctx.omega = omega
        return scores + gate.to(scores.dtype).view(-1, 1, 1) * phi

    @staticmethod
    def backward(ctx, grad):
        x, y, series, gate = ctx.saved_tensors
        alpha, beta = series.to(grad.dtype).unbind(0)
        two_x = 2 * x
        dims = (0, 2, 3)  # everything but the head
        grad_y = grad * y
        moments_cos, moments_sin = [grad.sum(dims)], [torch.zeros_like(gate, dtype=grad.dtype)]
        t_prev, t_cur = 1.0, x  # T_0, T_1
        u_prev, u_cur = 0.0, 1.0  # U_{-1}, U_0
        slope = 0.0  # dΦ/dt = Σ_k k(β_k cos kt − α_k sin kt) = Σ_k k(β_k T_k − α_k y U_{k-1})
        for k in range(1, alpha.shape[0]):
            moments_cos.append((grad * t_cur).sum(dims))
            moments_sin.append((grad_y * u_cur).sum(dims))
            slope = slope + k * (beta[k] * t_cur - alpha[k] * y * u_cur)
            t_prev, t_cur = t_cur, two_x * t_cur - t_prev
            u_prev, u_cur = u_cur, two_x * u_cur - u_prev
        moments_cos = torch.stack(moments_cos, dim=1)  # [heads, K+1]
        moments_sin = torch.stack(moments_sin, dim=1)
        g = gate.to(grad.dtype)
        grad_scores = grad * (1 + g.view(-1, 1, 1) * (ctx.omega * slope))
        grad_gate = (moments_cos * alpha).sum(1) + (moments_sin * beta).sum(1)
        grad_series = torch.stack((g @ moments_cos, g @ moments_sin)).to(series.dtype)
        return grad_scores, grad_series, grad_gate.to(gate.dtype), None


def gated_response(scores: torch.Tensor, series: torch.Tensor, gate: torch.Tensor, omega: float) -> torch.Tensor:
    """s + γ_h·Φ(s) for finite scores [b, heads, q, k], gate [heads]; differentiable in all three."""
    return _GatedResponse.apply(scores, series, gate, omega)

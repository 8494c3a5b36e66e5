"""The quantum attention response Φ(s) and the attention with logit = s + γ_h·Φ(s) (docs/design.md §3).

Per call the circuit is simulated at nd+1 sample points only (torch or Aer); every score
is then evaluated on the exact Fourier series, so the circuit cost depends on (n, d) and
never on the number of scores. Depends on torch (and qiskit lazily), never transformers.
"""

from __future__ import annotations

import math

import torch

from qstudy.quantum._attention_circuit import (
    check_angles,
    check_circuit_size,
    check_simulator,
    circuit_samples,
)
from qstudy.quantum._fourier import evaluate_series, fourier_layout, gated_response, sample_points, series_from_samples

__all__ = ["aer_parity", "attention_response", "quantum_attention", "response_series"]


def response_series(a: torch.Tensor, b: torch.Tensor, simulator: str = "torch") -> tuple[torch.Tensor, float]:
    """Fourier coefficients of Φ for angles a, b [depth, n_qubits].

    Returns:
        (coefficients [2, K+1] float64, differentiable in a and b; ω), for `evaluate_series`.
    """
    n_qubits, depth = check_angles(a, b)
    check_simulator(simulator)
    points = sample_points(n_qubits, depth)
    samples = circuit_samples(points, a, b, simulator)
    return series_from_samples(samples, n_qubits, depth), fourier_layout(n_qubits, depth)[0]


def attention_response(s: torch.Tensor, a: torch.Tensor, b: torch.Tensor, simulator: str = "torch") -> torch.Tensor:
    """Φ(s) of docs/design.md §3, elementwise, for any tensor of scores s.

    |ψ(s)⟩ = Π_l [CNOT_ring · ⊗_q R_Z(b[l,q]) R_Y(s + a[l,q])] · H^{⊗n}|0…0⟩,
    Φ(s) = Re(Σ_k ψ_k(s)) / 2^{n/2}. The circuit is simulated at n·d+1 points and Φ is
    evaluated on its exact Fourier series, so the cost of the circuit does not grow with s.

    Args:
        s: Scores, any shape (floating point; integers are promoted to the default dtype).
        a: R_Y offsets, [depth, n_qubits], 1 <= n_qubits <= 12, depth >= 1.
        b: R_Z angles, same shape as a.
        simulator: ``"torch"`` (batched statevector, autograd) or ``"aer"`` (Qiskit Aer;
            gradients in a, b by the amplitude shift rule).

    Returns:
        Φ(s), same shape and dtype as s, differentiable in s, a and b. Non-finite scores
        give Φ = 0, so s + γΦ(s) keeps a masked -inf score at -inf (no NaN).

    Raises:
        ValueError: a or b of the wrong shape, or an unknown simulator.
    """
    series, omega = response_series(a, b, simulator)
    if not torch.is_floating_point(s):
        s = s.to(torch.get_default_dtype())
    finite = torch.isfinite(s)
    phi = evaluate_series(torch.where(finite, s, torch.zeros_like(s)), series, omega)
    return torch.where(finite, phi, torch.zeros_like(phi))


def aer_parity(n_qubits: int, depth: int, a, b, n_scores: int = 257) -> float:
    """Max |Φ_torch − Φ_aer| over scores in [-4π, 4π] for this circuit (a trial logs it at start).

    Args:
        n_qubits, depth: The circuit size; a, b must be [depth, n_qubits].
        a, b: Angles (tensors or arrays).
        n_scores: Grid size.

    Raises:
        ValueError: sizes out of range or a, b of the wrong shape.
    """
    check_circuit_size(n_qubits, depth)
    a = torch.as_tensor(a, dtype=torch.float64).detach().cpu()
    b = torch.as_tensor(b, dtype=torch.float64).detach().cpu()
    if check_angles(a, b) != (n_qubits, depth):
        raise ValueError(
            f"a and b must have shape [depth, n_qubits] = [{depth}, {n_qubits}], got shape {tuple(a.shape)}"
        )
    scores = torch.linspace(-4 * math.pi, 4 * math.pi, n_scores, dtype=torch.float64)
    with torch.no_grad():
        by_torch = attention_response(scores, a, b, "torch")
        by_aer = attention_response(scores, a, b, "aer")
    return float((by_torch - by_aer).abs().max())


def quantum_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    series: torch.Tensor,
    omega: float,
    gate: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention with logit = s + γ_h·Φ(s), Φ from its Fourier series.

    Same semantics as ``torch.nn.functional.scaled_dot_product_attention`` (boolean mask:
    True attends; float mask: added; ``is_causal``: upper-left aligned), with grouped
    query attention done by folding the query groups instead of repeating K and V.

    Args:
        query: [b, heads, q_len, d_head]. key, value: [b, kv_heads, k_len, d_head],
            heads a multiple of kv_heads (head h uses kv head h // (heads // kv_heads)).
        series, omega: From `response_series`.
        gate: γ per head, [heads].
        attn_mask: Broadcastable to [b, heads, q_len, k_len], applied after the response.
        is_causal, scale, dropout_p: As in torch's SDPA.

    Returns:
        [b, heads, q_len, d_head].
    """
    batch, heads, q_len, d_head = query.shape
    kv_heads, k_len = key.shape[1], key.shape[2]
    groups = heads // kv_heads
    scale = d_head**-0.5 if scale is None else scale
    # Fold the groups of a KV head into its query rows: no copy of K or V.
    folded = query.reshape(batch, kv_heads, groups * q_len, d_head)
    scores = torch.matmul(folded, key.transpose(-1, -2)).mul_(scale).view(batch, heads, q_len, k_len)
    # s is the raw scaled score (finite): the mask goes on after the response.
    if scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # the series and softmax run in fp32 (Clenshaw in bf16 is too coarse)
    logits = gated_response(scores, series, gate, omega)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, torch.finfo(logits.dtype).min)
        else:
            logits = logits + attn_mask
    elif is_causal and q_len > 1:
        causal = torch.ones(q_len, k_len, dtype=torch.bool, device=query.device).tril()
        logits = logits.masked_fill(~causal, torch.finfo(logits.dtype).min)
    weights = torch.softmax(logits, dim=-1, dtype=torch.float32).to(query.dtype)
    if dropout_p > 0.0:
        weights = torch.nn.functional.dropout(weights, p=dropout_p)
    out = torch.matmul(weights.view(batch, kv_heads, groups * q_len, k_len), value)
    return out.view(batch, heads, q_len, value.shape[-1])

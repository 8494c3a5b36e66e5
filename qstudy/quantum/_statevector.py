"""A small batched statevector simulator in torch: the gates qstudy's circuits use.

The state of ``n`` qubits for a batch is a complex tensor ``[batch, 2**n]`` indexed as
Qiskit indexes it: qubit q is bit q of the basis-state index (little-endian).
"""

from __future__ import annotations

import functools

import torch

from qstudy.quantum._circuits import cnot_ring_pairs

__all__ = ["apply_single_qubit", "apply_cnot_ring", "expect_x", "product_state"]


def product_state(cos_half: torch.Tensor, sin_half: torch.Tensor) -> torch.Tensor:
    """Returns ⊗_q (cos_q|0⟩ + sin_q|1⟩) as ``[batch, 2**n]`` from ``[batch, n]`` factors."""
    batch, n = cos_half.shape
    state = torch.ones(batch, 1, dtype=cos_half.dtype, device=cos_half.device)
    # Qubit q is bit q: building from qubit n-1 down keeps qubit 0 the fastest index.
    for q in reversed(range(n)):
        factor = torch.stack([cos_half[:, q], sin_half[:, q]], dim=1)  # [batch, 2]
        state = (state.unsqueeze(2) * factor.unsqueeze(1)).reshape(batch, -1)
    return state


def apply_single_qubit(state: torch.Tensor, qubit: int, n_qubits: int, u00, u01, u10, u11) -> torch.Tensor:
    """Applies the 2x2 matrix [[u00, u01], [u10, u11]] to ``qubit``.

    Each entry is a scalar or a ``[batch]`` tensor (one matrix per batch element).
    """
    batch = state.shape[0]
    view = state.reshape(batch, 2 ** (n_qubits - 1 - qubit), 2, 2**qubit)
    s0, s1 = view[:, :, 0, :], view[:, :, 1, :]  # [batch, high, low]
    u00, u01, u10, u11 = (_as_batch(u) for u in (u00, u01, u10, u11))
    new = torch.stack([u00 * s0 + u01 * s1, u10 * s0 + u11 * s1], dim=2)
    return new.reshape(batch, -1)


def apply_cnot_ring(state: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """Applies the CNOT ring of ``cnot_ring_pairs(n_qubits)`` as one basis permutation."""
    if n_qubits < 2:
        return state
    index = _cnot_ring_gather(n_qubits, state.device)
    return state.index_select(1, index)


def expect_x(state: torch.Tensor, n_qubits: int) -> torch.Tensor:
    """Returns ⟨X_q⟩ for every qubit as a real ``[batch, n]`` tensor."""
    batch = state.shape[0]
    out = []
    for q in range(n_qubits):
        view = state.reshape(batch, 2 ** (n_qubits - 1 - q), 2, 2**q)
        # ⟨X_q⟩ = 2 Re Σ_{bit q = 0} conj(ψ_i) ψ_{i + 2^q}
        out.append(2.0 * (view[:, :, 0, :].conj() * view[:, :, 1, :]).real.sum(dim=(1, 2)))
    return torch.stack(out, dim=1)


def _as_batch(u):
    if isinstance(u, torch.Tensor) and u.dim() == 1:
        return u[:, None, None]
    return u


@functools.lru_cache(maxsize=64)
def _cnot_ring_gather(n_qubits: int, device: torch.device) -> torch.Tensor:
    # new[j] = old[g(j)] with g = f_1 ∘ f_2 ∘ ... ∘ f_k for the ring's CNOTs f_1..f_k in
    # order (each CNOT is an involution on basis states).
    idx = torch.arange(2**n_qubits)
    gather = idx.clone()
    for control, target in cnot_ring_pairs(n_qubits):
        flipped = torch.where((idx >> control) & 1 == 1, idx ^ (1 << target), idx)
        gather = gather[flipped]
    return gather.to(device)

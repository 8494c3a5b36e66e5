"""Shared circuit conventions: the CNOT ring used by every qstudy circuit (docs/design.md §2, §3)."""

from __future__ import annotations

__all__ = ["cnot_ring_pairs"]


def cnot_ring_pairs(n_qubits: int) -> list[tuple[int, int]]:
    """Returns the (control, target) pairs of the CNOT ring on ``n_qubits`` qubits, in order.

    CNOT(q -> q+1 mod n) for q = 0..n-1 when n >= 3, a single CNOT(0 -> 1) when n == 2,
    and nothing when n == 1. Qubit q is Qiskit's qubit q.
    """
    if n_qubits >= 3:
        return [(q, (q + 1) % n_qubits) for q in range(n_qubits)]
    if n_qubits == 2:
        return [(0, 1)]
    return []

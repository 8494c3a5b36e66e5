"""The optimizer's response circuit (docs/design.md §2, ``response="circuit"``).

An ``n_qubits`` register encodes ``n_qubits`` consecutive parameter coordinates x:

    |ψ⟩ = [Π_{l=1..depth} CNOT_ring · R_Z(πx) · R_Y(πx)] · R_Y(πx) |0…0⟩

and the response of coordinate q is ⟨ψ|X_q|ψ⟩. With depth 0 this is sin(πx_q).
"""

from __future__ import annotations

import math

import torch

from qstudy.quantum._circuits import cnot_ring_pairs
from qstudy.quantum._statevector import apply_cnot_ring, apply_single_qubit, expect_x, product_state

__all__ = [
    "MAX_OPTIMIZER_QUBITS",
    "STATEVECTOR_BUDGET_BYTES",
    "blocks_per_chunk",
    "optimizer_circuit",
    "optimizer_response",
]

MAX_OPTIMIZER_QUBITS = 20
# Bytes of statevectors optimizer_response holds at once: it simulates its blocks a chunk
# at a time, so memory stays bounded whatever n_qubits (one block is 2**n amplitudes,
# 8 MiB at n = 20 in complex64) and however many blocks a partition has.
STATEVECTOR_BUDGET_BYTES = 128 * 2**20
# Statevectors alive at once per block: in a gate (apply_single_qubit) the input, the two
# halves of the output, a product being summed, then their stack: at most 4 of 2**n.
_LIVE_STATEVECTORS = 4


def blocks_per_chunk(n_qubits: int, complex_dtype: torch.dtype = torch.complex64) -> int:
    """Blocks simulated together so that their statevectors fit STATEVECTOR_BUDGET_BYTES (>= 1).

    Args:
        n_qubits: register size.
        complex_dtype: the simulation's dtype (complex64, or complex128 for float64 input).
    """
    per_block = _LIVE_STATEVECTORS * torch.empty((), dtype=complex_dtype).element_size() * 2**n_qubits
    return max(1, STATEVECTOR_BUDGET_BYTES // per_block)


def _check(n_qubits: int, depth: int) -> None:
    if not isinstance(n_qubits, int) or not 1 <= n_qubits <= MAX_OPTIMIZER_QUBITS:
        raise ValueError(f"n_qubits must be an integer in [1, {MAX_OPTIMIZER_QUBITS}], got {n_qubits!r}")
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth must be an integer >= 0, got {depth!r}")


def optimizer_circuit(n_qubits: int, depth: int):
    """Builds the optimizer's response circuit as a Qiskit ``QuantumCircuit``.

    The single source of truth for the circuit; its angles are the Qiskit
    ``ParameterVector`` ``x`` of length ``n_qubits`` (the encoded coordinates; each gate
    takes the angle π·x_q).

    Args:
        n_qubits: register size, 1 to 20.
        depth: number of R_Y · R_Z · CNOT-ring layers after the encoding R_Y layer, >= 0.

    Returns:
        ``(circuit, x)``: the circuit and its ``ParameterVector``.
    """
    _check(n_qubits, depth)
    from qiskit.circuit import ParameterVector, QuantumCircuit

    x = ParameterVector("x", n_qubits)
    circuit = QuantumCircuit(n_qubits, name=f"optimizer_response_n{n_qubits}_d{depth}")
    for q in range(n_qubits):
        circuit.ry(math.pi * x[q], q)
    for _ in range(depth):
        for q in range(n_qubits):
            circuit.ry(math.pi * x[q], q)
            circuit.rz(math.pi * x[q], q)
        for control, target in cnot_ring_pairs(n_qubits):
            circuit.cx(control, target)
    return circuit, x


def optimizer_response(x: torch.Tensor, depth: int) -> torch.Tensor:
    """Returns ⟨X_q⟩ of the optimizer circuit for a batch of encoded coordinates.

    A batched torch statevector simulation: complex128 for float64 input (agrees with
    Qiskit Aer to 1e-12), complex64 for float32 and below; `blocks_per_chunk` blocks at a
    time, so its temporary statevectors stay within STATEVECTOR_BUDGET_BYTES.

    Args:
        x: ``[..., n_qubits]`` coordinates (the circuit's angles are π·x).
        depth: number of layers, >= 0 (0 gives exactly ``sin(π x)``).

    Returns:
        ``[..., n_qubits]`` tensor of ⟨X_q⟩ in ``x``'s real dtype (float32 at least).
    """
    if x.dim() == 0:
        raise ValueError("x must have shape [..., n_qubits], got a scalar")
    n_qubits = x.shape[-1]
    _check(n_qubits, depth)
    real_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    complex_dtype = torch.complex128 if real_dtype == torch.float64 else torch.complex64
    flat = x.reshape(-1, n_qubits).to(real_dtype)
    chunks = flat.split(blocks_per_chunk(n_qubits, complex_dtype))  # one, empty, for no blocks
    out = torch.cat([_simulate(chunk, depth, complex_dtype) for chunk in chunks])
    return out.reshape(x.shape).to(real_dtype)


def _simulate(flat: torch.Tensor, depth: int, complex_dtype: torch.dtype) -> torch.Tensor:
    """⟨X_q⟩ of ``[blocks, n_qubits]`` coordinates in one batched simulation."""
    n_qubits = flat.shape[-1]
    half = 0.5 * math.pi * flat  # R_Y(φ), R_Z(φ) take φ/2
    cos_half, sin_half = torch.cos(half), torch.sin(half)
    state = product_state(cos_half, sin_half).to(complex_dtype)
    if depth > 0:
        # R_Z(φ)·R_Y(φ) = [[e^{-iφ/2} c, -e^{-iφ/2} s], [e^{iφ/2} s, e^{iφ/2} c]]
        phase = torch.polar(torch.ones_like(half), half)  # e^{iφ/2}
        minus = phase.conj()
        for _ in range(depth):
            for q in range(n_qubits):
                c, s = cos_half[:, q], sin_half[:, q]
                state = apply_single_qubit(
                    state, q, n_qubits, minus[:, q] * c, -minus[:, q] * s, phase[:, q] * s, phase[:, q] * c
                )
            state = apply_cnot_ring(state, n_qubits)
    return expect_x(state, n_qubits)

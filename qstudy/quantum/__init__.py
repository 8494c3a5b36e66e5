"""Circuits of qstudy: one Qiskit builder per circuit (the source of truth), Qiskit Aer
for reference simulation, and batched torch statevector simulators for the hot path.

Depends on torch and qiskit only (never ray, mlflow, deepspeed or transformers).
"""

from qstudy.quantum._attention import aer_parity, attention_response, quantum_attention, response_series
from qstudy.quantum._attention_circuit import (
    attention_circuit,
    bind_attention_circuit,
    check_circuit_size,
    check_simulator,
)
from qstudy.quantum._circuits import cnot_ring_pairs
from qstudy.quantum._optimizer_circuit import MAX_OPTIMIZER_QUBITS, optimizer_circuit, optimizer_response

__all__ = [
    "MAX_OPTIMIZER_QUBITS",
    "aer_parity",
    "attention_circuit",
    "attention_response",
    "bind_attention_circuit",
    "check_circuit_size",
    "check_simulator",
    "quantum_attention",
    "response_series",
    "cnot_ring_pairs",
    "optimizer_circuit",
    "optimizer_response",
]

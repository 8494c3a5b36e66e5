"""The attention response circuit of docs/design.md §3: Qiskit builder, torch and Aer simulators.

|ψ(s)⟩ = Π_{l=1..d} [ CNOT_ring · ⊗_q R_Z(b[l,q]) R_Y(s + a[l,q]) ] · H^{⊗n} |0…0⟩
Φ(s)   = Re( Σ_k ψ_k(s) ) / 2^{n/2}

`attention_circuit` is the single source of truth; `_torch_samples` and `_aer_samples`
simulate it at the Fourier sample points (`_fourier.py` turns samples into the series).
Qiskit Aer is imported lazily, so `import qstudy.quantum` stays fast.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from qstudy.quantum._circuits import cnot_ring_pairs
from qstudy.quantum._qiskit_thread import on_qiskit_thread
from qstudy.quantum._statevector import apply_cnot_ring, apply_single_qubit

__all__ = ["MAX_QUBITS", "SIMULATORS", "attention_circuit", "check_angles", "check_circuit_size"]

MAX_QUBITS = 12
SIMULATORS = ("torch", "aer")


# ----------------------------------------------------------------------------- checks
def check_circuit_size(n_qubits: int, depth: int, depth_name: str = "depth") -> None:
    """Raises ValueError naming the argument, value and allowed range."""
    if isinstance(n_qubits, bool) or not isinstance(n_qubits, int) or not 1 <= n_qubits <= MAX_QUBITS:
        raise ValueError(f"n_qubits must be an integer in [1, {MAX_QUBITS}], got n_qubits={n_qubits!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"{depth_name} must be an integer >= 1, got {depth_name}={depth!r}")


def check_simulator(simulator: str) -> None:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {list(SIMULATORS)}, got simulator={simulator!r}")


def check_angles(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """Checks that a and b are [depth, n_qubits] tensors of one shape; returns (n_qubits, depth)."""
    for name, angles in (("a", a), ("b", b)):
        if not isinstance(angles, torch.Tensor) or angles.dim() != 2:
            shape = tuple(angles.shape) if isinstance(angles, torch.Tensor) else type(angles).__name__
            raise ValueError(
                f"{name} must be a 2-D tensor of shape [depth, n_qubits] (depth >= 1, "
                f"1 <= n_qubits <= {MAX_QUBITS}), got {name} of shape {shape}"
            )
    if a.shape != b.shape:
        raise ValueError(
            f"a and b must have the same shape [depth, n_qubits], got a of shape {tuple(a.shape)} "
            f"and b of shape {tuple(b.shape)}"
        )
    depth, n_qubits = a.shape
    if not 1 <= n_qubits <= MAX_QUBITS or depth < 1:
        raise ValueError(
            f"a and b must have shape [depth, n_qubits] with depth >= 1 and 1 <= n_qubits <= {MAX_QUBITS}, "
            f"got shape {tuple(a.shape)}"
        )
    return n_qubits, depth


# ----------------------------------------------------------------------------- Qiskit
def attention_circuit(n_qubits: int, depth: int):
    """Builds the attention response circuit of docs/design.md §3 as a Qiskit ``QuantumCircuit``.

    Layer l applies R_Y(s + a[l,q]) then R_Z(b[l,q]) on every qubit q, then the CNOT ring
    (`cnot_ring_pairs`), after an initial H on every qubit. Qubit q is Qiskit's qubit q.

    Args:
        n_qubits: Register size, 1..12.
        depth: Number of layers, >= 1.

    Returns:
        A ``QuantumCircuit`` without measurements whose parameters are named ``s``,
        ``a[l,q]`` and ``b[l,q]`` (l < depth, q < n_qubits); bind them with
        `bind_attention_circuit`.

    Raises:
        ValueError: n_qubits or depth out of range.
    """
    check_circuit_size(n_qubits, depth)
    from qiskit import QuantumCircuit
    from qiskit.circuit import Parameter

    s = Parameter("s")
    circuit = QuantumCircuit(n_qubits, name=f"attention_response_n{n_qubits}_d{depth}")
    circuit.h(range(n_qubits))
    for layer in range(depth):
        for q in range(n_qubits):
            circuit.ry(s + Parameter(f"a[{layer},{q}]"), q)
            circuit.rz(Parameter(f"b[{layer},{q}]"), q)
        for control, target in cnot_ring_pairs(n_qubits):
            circuit.cx(control, target)
    return circuit


def bind_attention_circuit(circuit, s: float, a, b):
    """Returns ``circuit`` with s, a[l,q], b[l,q] bound to numbers (a, b: [depth, n_qubits])."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    values = {"s": float(s)}
    for layer in range(a.shape[0]):
        for q in range(a.shape[1]):
            values[f"a[{layer},{q}]"] = float(a[layer, q])
            values[f"b[{layer},{q}]"] = float(b[layer, q])
    return circuit.assign_parameters({p: values[p.name] for p in circuit.parameters})


@functools.lru_cache(maxsize=32)
def _aer_template(n_qubits: int, depth: int):
    """The builder's circuit with a statevector save, transpiled once for Aer."""
    from qiskit import transpile
    from qiskit_aer import AerSimulator

    simulator = AerSimulator(method="statevector", max_parallel_threads=1)
    circuit = attention_circuit(n_qubits, depth)
    circuit.save_statevector()
    circuit = transpile(circuit, simulator, optimization_level=0)
    by_name = {p.name: p for p in circuit.parameters}
    return simulator, circuit, by_name


def _aer_amplitude_sums(s: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Σ_k ψ_k / 2^{n/2} for K bound points, simulated by Aer in one batched run (on the
    process's Qiskit thread: ``qstudy.quantum._qiskit_thread``).

    Args:
        s: [K] scores. a, b: [K, depth, n_qubits] angles, one set per point.

    Returns:
        complex128 [K].
    """
    return on_qiskit_thread(_simulate_amplitude_sums, s, a, b)


def _simulate_amplitude_sums(s: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    depth, n_qubits = a.shape[1:]
    simulator, circuit, by_name = _aer_template(n_qubits, depth)
    binds = {by_name["s"]: s.tolist()}
    for layer in range(depth):
        for q in range(n_qubits):
            binds[by_name[f"a[{layer},{q}]"]] = a[:, layer, q].tolist()
            binds[by_name[f"b[{layer},{q}]"]] = b[:, layer, q].tolist()
    result = simulator.run(circuit, parameter_binds=[binds]).result()
    if not result.success:  # pragma: no cover - Aer reports its own failures here
        raise RuntimeError(f"Aer simulation of the attention circuit failed: {result.status}")
    states = np.stack([np.asarray(result.data(i)["statevector"]) for i in range(len(s))])
    return states.sum(axis=1) / 2 ** (n_qubits / 2)


def aer_circuit_response(s: np.ndarray, a, b) -> np.ndarray:
    """Φ(s) by a direct Aer simulation of `attention_circuit` at every s (the slow reference)."""
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    a = np.broadcast_to(np.asarray(a, dtype=np.float64), (len(s), *np.shape(a)))
    b = np.broadcast_to(np.asarray(b, dtype=np.float64), (len(s), *np.shape(b)))
    return _aer_amplitude_sums(s, a, b).real


class _AerSamples(torch.autograd.Function):
    """Φ at the sample points by Aer; ∂/∂a, ∂/∂b by the amplitude shift rule.

    For a rotation R(θ) = exp(-iθG/2) with G² = 1, ∂R/∂θ = ½R(θ + π), so
    ∂ψ/∂θ = ½ψ(θ + π) exactly: one extra circuit per angle per sample point.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        a64 = a.detach().to("cpu", torch.float64).numpy()
        b64 = b.detach().to("cpu", torch.float64).numpy()
        s = points.detach().cpu().numpy()
        ctx.save_for_backward(a, b, points)
        values = _aer_amplitude_sums(
            s, np.broadcast_to(a64, (len(s), *a64.shape)), np.broadcast_to(b64, (len(s), *b64.shape))
        )
        return torch.as_tensor(values.real, dtype=torch.float64, device=a.device)

    @staticmethod
    def backward(ctx, grad_samples: torch.Tensor):
        a, b, points = ctx.saved_tensors
        a64 = a.detach().to("cpu", torch.float64).numpy()
        b64 = b.detach().to("cpu", torch.float64).numpy()
        s = points.cpu().numpy()
        depth, n_qubits = a64.shape
        n_angles, n_points = depth * n_qubits, len(s)
        # Shifted angle sets: first every a[l,q] + π, then every b[l,q] + π; each at every point.
        shifts = np.zeros((2 * n_angles, 2, depth, n_qubits))
        for i in range(n_angles):
            shifts[i, 0].flat[i] = math.pi
            shifts[n_angles + i, 1].flat[i] = math.pi
        a_sets = np.repeat(a64[None] + shifts[:, 0], n_points, axis=0)
        b_sets = np.repeat(b64[None] + shifts[:, 1], n_points, axis=0)
        shifted = _aer_amplitude_sums(np.tile(s, 2 * n_angles), a_sets, b_sets).real
        jacobian = 0.5 * shifted.reshape(2 * n_angles, n_points)  # ∂Φ(s_j)/∂θ_i
        grad = torch.as_tensor(jacobian, device=grad_samples.device) @ grad_samples.to(torch.float64)
        grad_a = grad[:n_angles].reshape(depth, n_qubits).to(a.dtype) if ctx.needs_input_grad[0] else None
        grad_b = grad[n_angles:].reshape(depth, n_qubits).to(b.dtype) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b, None


def _aer_samples(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Φ(points) [N] float64 via Aer, differentiable in a and b."""
    return _AerSamples.apply(a, b, points)


# ----------------------------------------------------------------------------- torch
_KRON_MAX_QUBITS = 6  # up to here one [2^n, 2^n] matrix per layer is cheaper than gate by gate


def _layer_gates(points: torch.Tensor, a_layer: torch.Tensor, b_layer: torch.Tensor) -> torch.Tensor:
    """R_Z(b) R_Y(s + a) for every point and qubit: [B, n, 2, 2] complex128."""
    half_y = (points[:, None] + a_layer[None, :]) / 2  # [B, n]
    cos_y, sin_y = torch.cos(half_y), torch.sin(half_y)
    phase = torch.exp(-0.5j * b_layer.to(torch.complex128))[:, None]  # R_Z = diag(e^{-ib/2}, e^{ib/2})
    row0 = torch.stack((cos_y, -sin_y), dim=-1) * phase  # [[p c, -p s],
    row1 = torch.stack((sin_y, cos_y), dim=-1) * phase.conj()  # [p* s, p* c]]
    return torch.stack((row0, row1), dim=-2)


def _torch_samples(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Φ(points) [N] by a batched complex128 statevector simulation; autograd in a and b."""
    depth, n_qubits = a.shape
    a, b = a.to(torch.float64), b.to(torch.float64)
    points = points.to(device=a.device, dtype=torch.float64)
    batch = points.shape[0]
    state = torch.full((batch, 2**n_qubits), 2 ** (-n_qubits / 2), dtype=torch.complex128, device=a.device)
    for layer in range(depth):
        gates = _layer_gates(points, a[layer], b[layer])  # [B, n, 2, 2]
        if n_qubits <= _KRON_MAX_QUBITS:
            # ⊗_q gates as one matrix, qubit n-1 most significant (Qiskit's little-endian order).
            matrix = gates[:, n_qubits - 1]
            for q in range(n_qubits - 2, -1, -1):
                size = matrix.shape[-1] * 2
                matrix = (matrix[:, :, None, :, None] * gates[:, q, None, :, None, :]).reshape(batch, size, size)
            state = (matrix @ state[:, :, None])[:, :, 0]
        else:
            for q in range(n_qubits):
                g = gates[:, q, :, :, None, None]
                state = apply_single_qubit(state, q, n_qubits, g[:, 0, 0], g[:, 0, 1], g[:, 1, 0], g[:, 1, 1])
        state = apply_cnot_ring(state, n_qubits)
    return state.sum(dim=1).real / 2 ** (n_qubits / 2)


def circuit_samples(points: torch.Tensor, a: torch.Tensor, b: torch.Tensor, simulator: str) -> torch.Tensor:
    """Φ at the given points [N] (float64) by the chosen simulator, differentiable in a and b."""
    if simulator == "torch":
        return _torch_samples(points, a, b)
    return _aer_samples(points, a, b)

"""The optimizer's response circuit (docs/design.md §2, ``response="circuit"``).

An ``n_qubits`` register encodes ``n_qubits`` consecutive parameter coordinates x:

    |ψ⟩ = [Π_{l=1..depth} CNOT_ring · R_Z(πx) · R_Y(πx)] · R_Y(πx) |0…0⟩

and the response of coordinate q is ⟨ψ|X_q|ψ⟩. With depth 0 this is sin(πx_q).
"""

from __future__ import annotations

import math
import threading
import warnings

import torch

from qstudy.quantum._circuits import cnot_ring_pairs
from qstudy.quantum._statevector import apply_cnot_ring, apply_single_qubit, expect_x, product_state

__all__ = [
    "MAX_OPTIMIZER_QUBITS",
    "STATEVECTOR_BUDGET_BYTES",
    "blocks_per_chunk",
    "optimizer_circuit",
    "optimizer_response",
    "UNROLLED_MAX_QUBITS",
    "COMPILED_MIN_BLOCKS",
]

MAX_OPTIMIZER_QUBITS = 20
# Bytes of statevectors optimizer_response holds at once: it simulates its blocks a chunk
# at a time, so memory stays bounded whatever n_qubits (one block is 2**n amplitudes,
# 8 MiB at n = 20 in complex64) and however many blocks a partition has.
STATEVECTOR_BUDGET_BYTES = 128 * 2**20
# Statevectors alive at once per block: in a gate (apply_single_qubit) the input, the two
# halves of the output, a product being summed, then their stack: at most 4 of 2**n.
_LIVE_STATEVECTORS = 4

# Registers up to this size have a compiled, unrolled simulation (_unrolled_expect_x): one
# loop over the blocks with each block's 2**n amplitudes in scalars, ~30x faster than the
# statevector simulator on CPU (benchmarks/RESULTS.md). Its graph grows as n·2**n·depth:
# the first compile takes ~15 s at n = 3, ~30 s at 4 (the paper's), ~70 s at 5.
UNROLLED_MAX_QUBITS = 4
# Fewer float32 blocks than this in a call take the statevector simulator: a compile costs
# seconds once per (n_qubits, depth), 16384 blocks cost the simulator ~40 ms.
COMPILED_MIN_BLOCKS = 1 << 14
# Blocks per call of the compiled kernel: its ~80 [blocks] float32 temporaries stay ~20 MiB.
_COMPILED_CHUNK_BLOCKS = 1 << 16
# More graph nodes than the kernel has at UNROLLED_MAX_QUBITS (~2000 at depth 2).
_MAX_FUSION_NODES = 1 << 16


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


def optimizer_response(x: torch.Tensor, depth: int, *, compiled: bool = True) -> torch.Tensor:
    """Returns ⟨X_q⟩ of the optimizer circuit for a batch of encoded coordinates.

    A batched torch statevector simulation: complex128 for float64 input (agrees with
    Qiskit Aer to 1e-12), complex64 for float32 and below; `blocks_per_chunk` blocks at a
    time, so its temporary statevectors stay within STATEVECTOR_BUDGET_BYTES. At least
    COMPILED_MIN_BLOCKS float32 blocks of up to UNROLLED_MAX_QUBITS qubits, at depth >= 1,
    are simulated instead by a ``torch.compile``d unrolled kernel in float32 (agrees with
    the simulator to ~1e-6); where compiling fails it warns once and uses the simulator.

    Args:
        x: ``[..., n_qubits]`` coordinates (the circuit's angles are π·x).
        depth: number of layers, >= 0 (0 gives exactly ``sin(π x)``).
        compiled: allow the compiled kernel (default True); False: always the simulator.

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
    use_kernel = real_dtype == torch.float32 and n_qubits <= UNROLLED_MAX_QUBITS and depth >= 1
    if compiled and use_kernel and flat.shape[0] >= COMPILED_MIN_BLOCKS:
        out = _compiled_response(flat, depth)
        if out is not None:
            return out.reshape(x.shape)
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


# ---------------------------------------------------------------------------------------
# The compiled kernel. The batched simulator above runs each gate as a few torch ops over
# [blocks, 2**n] statevectors: every op is a pass over memory, ~2.6 s per 1M blocks of 4
# qubits at depth 2 on one CPU thread. Here every amplitude is its own [blocks] tensor, so
# the gates are plain arithmetic on them that inductor fuses into one loop over the blocks:
# ~0.08 s per 1M blocks. The angles come in as [n, blocks] rows: inductor vectorises loads
# along a row, not the strided columns of [blocks, n].


def _cmul(a, b):
    """a·b for complex numbers as (re, im) pairs, im None where the value is real."""
    (ar, ai), (br, bi) = a, b
    if ai is None and bi is None:
        return ar * br, None
    if ai is None:
        return ar * br, ar * bi
    if bi is None:
        return ar * br, ai * br
    return ar * br - ai * bi, ar * bi + ai * br


def _combine(c, a, s, b):
    """c·a + s·b for real c, s and complex a, b (as in _cmul)."""
    (ar, ai), (br, bi) = a, b
    if ai is None and bi is None:
        return c * ar + s * br, None
    if ai is None:
        return c * ar + s * br, s * bi
    if bi is None:
        return c * ar + s * br, c * ai
    return c * ar + s * br, c * ai + s * bi


def _ring_permutation(n_qubits: int) -> tuple[int, ...]:
    """new[j] = old[g(j)] for the CNOT ring, as Python ints (the compiled code indexes
    lists with them; a tensor index would be data the compiler cannot see). Not cached:
    dynamo traces through a cache wrapper, with a warning, and this runs once per compile."""
    if n_qubits < 2:
        return tuple(range(2**n_qubits))
    idx = list(range(2**n_qubits))
    gather = list(idx)
    for control, target in cnot_ring_pairs(n_qubits):
        flipped = [i ^ (1 << target) if (i >> control) & 1 else i for i in idx]
        gather = [gather[f] for f in flipped]
    return tuple(gather)


def _unrolled_expect_x(angles: torch.Tensor, depth: int) -> torch.Tensor:
    """⟨X_q⟩ of ``[n, blocks]`` coordinates as ``[n, blocks]``, for depth >= 1.

    R_Y(φ) = [[c, -s], [s, c]] with c, s = cos(φ/2), sin(φ/2); R_Z(φ) is applied as
    diag(1, e^{iφ}), which is R_Z(φ) times the global phase e^{iφ/2}: no ⟨X_q⟩ sees it.
    """
    n = angles.shape[0]
    half = (0.5 * math.pi) * angles
    cos_half, sin_half = torch.cos(half), torch.sin(half)
    c = [cos_half[q] for q in range(n)]
    s = [sin_half[q] for q in range(n)]
    phase = [(c[q] * c[q] - s[q] * s[q], 2.0 * c[q] * s[q]) for q in range(n)]  # e^{iφ}
    # Up to the first CNOT ring every gate acts on one qubit of a product state: apply the
    # encoding R_Y and the first layer's R_Y, R_Z to each qubit's 2-vector, then expand.
    amps = [(1.0, None)]  # amplitude i: bit q of i is qubit q (Qiskit's order)
    for q in range(n):
        a0 = _combine(c[q], (c[q], None), -s[q], (s[q], None))
        a1 = _cmul(_combine(s[q], (c[q], None), c[q], (s[q], None)), phase[q])
        amps = [_cmul(a, a0) for a in amps] + [_cmul(a, a1) for a in amps]
    ring = _ring_permutation(n)
    amps = [amps[j] for j in ring]
    for _ in range(depth - 1):
        for q in range(n):
            bit = 1 << q
            for i in range(2**n):
                if not i & bit:
                    a, b = amps[i], amps[i | bit]
                    amps[i] = _combine(c[q], a, -s[q], b)
                    amps[i | bit] = _cmul(_combine(s[q], a, c[q], b), phase[q])
        amps = [amps[j] for j in ring]
    out = []
    for q in range(n):
        bit = 1 << q
        # ⟨X_q⟩ = 2 Re Σ_{bit q = 0} conj(ψ_i) ψ_{i + 2^q}
        total = 0.0
        for i in range(2**n):
            if not i & bit:
                (ar, ai), (br, bi) = amps[i], amps[i | bit]
                total = total + ar * br + (ai * bi if ai is not None and bi is not None else 0.0)
        out.append(2.0 * total)
    return torch.stack(out)


_kernel = None
_kernel_failed = False
_kernel_lock = threading.Lock()


def _compiled_response(flat: torch.Tensor, depth: int) -> torch.Tensor | None:
    """⟨X_q⟩ of ``[blocks, n]`` float32 coordinates by the compiled kernel, or None (once
    warning why) where ``torch.compile`` fails here."""
    global _kernel, _kernel_failed
    if _kernel_failed:
        return None
    with _kernel_lock:
        if _kernel is None:
            # Inductor fuses at most 64 nodes into one loop by default; cut into loops, the
            # kernel passes ~80 [blocks] temporaries through memory (4 qubits, depth 2: 76
            # ns a block with the default, 49 with one loop).
            options = {"max_fusion_size": _MAX_FUSION_NODES}
            _kernel = torch.compile(_unrolled_expect_x, dynamic=True, fullgraph=True, options=options)
    try:
        return torch.cat([_kernel(chunk.t().contiguous(), depth).t() for chunk in flat.split(_COMPILED_CHUNK_BLOCKS)])
    except Exception as err:  # a missing C++ compiler or Triton, an unsupported device
        _kernel_failed = True
        reason = f"{type(err).__name__}: {err}"
        message = f"optimizer_response: torch.compile of the unrolled circuit kernel failed ({reason}); "
        warnings.warn(message + "using the statevector simulator, which is ~30x slower.", RuntimeWarning, stacklevel=3)
        return None

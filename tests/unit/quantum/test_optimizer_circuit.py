"""The optimizer's response circuit: torch statevector vs Qiskit Aer, depth 0 vs sin."""

import math
import warnings

import pytest
import torch

from qstudy.quantum import cnot_ring_pairs, optimizer_circuit, optimizer_response


def _aer_expect_x(n_qubits, depth, points):
    from qiskit import transpile
    from qiskit.quantum_info import SparsePauliOp, Statevector
    from qiskit_aer import AerSimulator

    circuit, x = optimizer_circuit(n_qubits, depth)
    sim = AerSimulator(method="statevector")
    bound = []
    for row in points.tolist():
        c = circuit.assign_parameters(dict(zip(x, row)))
        c.save_statevector()
        bound.append(c)
    result = sim.run(transpile(bound, sim)).result()
    out = []
    for i in range(len(bound)):
        state = Statevector(result.get_statevector(i))
        # Pauli labels are little-endian: character n-1-q acts on qubit q.
        out.append(
            [
                state.expectation_value(SparsePauliOp("I" * (n_qubits - 1 - q) + "X" + "I" * q)).real
                for q in range(n_qubits)
            ]
        )
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("n_qubits", range(1, 9))
@pytest.mark.parametrize("depth", range(0, 4))
def test_torch_statevector_equals_aer(n_qubits, depth):
    gen = torch.Generator().manual_seed(n_qubits * 10 + depth)
    points = torch.rand(4, n_qubits, generator=gen, dtype=torch.float64) * 8 - 4
    torch.testing.assert_close(
        optimizer_response(points, depth), _aer_expect_x(n_qubits, depth, points), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("n_qubits", [1, 2, 5])
def test_depth_zero_is_sin(n_qubits):
    x = torch.linspace(-3, 3, 60 * n_qubits, dtype=torch.float64).view(-1, n_qubits)
    torch.testing.assert_close(optimizer_response(x, 0), torch.sin(math.pi * x), rtol=0, atol=1e-12)


def test_batched_shapes_and_float32():
    x = torch.rand(3, 5, 4)
    out = optimizer_response(x, 2)
    assert out.shape == (3, 5, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), optimizer_response(x.double(), 2), rtol=0, atol=1e-5)


def test_circuit_structure():
    circuit, x = optimizer_circuit(3, 2)
    ops = circuit.count_ops()
    assert (ops["ry"], ops["rz"], ops["cx"]) == (3 + 2 * 3, 2 * 3, 2 * 3)
    assert len(x) == 3 and set(circuit.parameters) == set(x)
    assert cnot_ring_pairs(1) == [] and cnot_ring_pairs(2) == [(0, 1)]
    assert cnot_ring_pairs(4) == [(0, 1), (1, 2), (2, 3), (3, 0)]


@pytest.mark.parametrize(
    "n_qubits,depth,message",
    [
        (0, 1, "n_qubits must be an integer in [1, 20], got 0"),
        (21, 1, "n_qubits must be an integer in [1, 20], got 21"),
        (2, -1, "depth must be an integer >= 0, got -1"),
    ],
)
def test_bad_circuit_arguments(n_qubits, depth, message):
    with pytest.raises(ValueError) as err:
        optimizer_circuit(n_qubits, depth)
    assert str(err.value) == message


def test_largest_register_equals_aer_at_one_point():
    """n_qubits = 20, the most the config allows: one block of 2^20 amplitudes."""
    gen = torch.Generator().manual_seed(20)
    point = torch.rand(1, 20, generator=gen, dtype=torch.float64) * 8 - 4
    torch.testing.assert_close(optimizer_response(point, 2), _aer_expect_x(20, 2, point), rtol=0, atol=1e-6)


class _Stop(Exception):
    pass


def test_circuit_response_chunks_fit_the_memory_budget_at_20_qubits(monkeypatch):
    """SuperpositionalAdamW's circuit response on 100 blocks of 20 qubits simulates them a
    few at a time: a chunk's statevectors (4 live per block, 2^20 complex64 amplitudes
    each, 32 MiB) stay within the budget. The first chunk is recorded, then stopped
    before anything is allocated."""
    import qstudy.quantum._optimizer_circuit as circuit
    from qstudy.optim import SuperpositionalAdamW

    chunks = []

    def record(cos_half, sin_half):
        chunks.append(cos_half.shape[0])
        raise _Stop

    monkeypatch.setattr(circuit, "product_state", record)
    param = torch.nn.Parameter(torch.rand(100 * 20))
    param.grad = torch.ones_like(param)
    optimizer = SuperpositionalAdamW([param], n_qubits=20, circuit_depth=1, response="circuit", scope="all")
    with pytest.raises(_Stop):
        optimizer.step()
    block_bytes = 4 * 8 * 2**20
    assert chunks[0] >= 1 and chunks[0] * block_bytes <= circuit.STATEVECTOR_BUDGET_BYTES <= 256 * 2**20
    assert chunks[0] == circuit.blocks_per_chunk(20) == 4
    assert circuit.blocks_per_chunk(20, torch.complex128) == 2


def test_chunked_response_equals_one_shot(monkeypatch):
    import qstudy.quantum._optimizer_circuit as circuit

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(37, 5, generator=gen, dtype=torch.float64) * 8 - 4
    one_shot = optimizer_response(x, 2)
    calls = []
    original = circuit.product_state
    monkeypatch.setattr(circuit, "product_state", lambda c, s: calls.append(c.shape[0]) or original(c, s))
    # 3 blocks of 5 qubits per chunk: 3 x 4 live statevectors x 32 amplitudes x 16 bytes.
    monkeypatch.setattr(circuit, "STATEVECTOR_BUDGET_BYTES", 3 * 4 * 32 * 16)
    chunked = optimizer_response(x, 2)
    assert calls == [3] * 12 + [1]
    torch.testing.assert_close(chunked, one_shot, rtol=0, atol=1e-15)
    assert circuit.blocks_per_chunk(20) >= 1
    monkeypatch.setattr(circuit, "STATEVECTOR_BUDGET_BYTES", 1)
    assert circuit.blocks_per_chunk(20) == 1  # at least one block, whatever the budget


def _no_simulator(cos_half, sin_half):
    raise AssertionError("the statevector simulator ran where the compiled kernel should have")


@pytest.mark.parametrize("n_qubits,depth", [(1, 1), (2, 3), (3, 1), (4, 2)])
def test_compiled_kernel_equals_aer(monkeypatch, n_qubits, depth):
    """The unrolled, compiled kernel (float32, forced on a few blocks) against Aer."""
    import qstudy.quantum._optimizer_circuit as circuit

    monkeypatch.setattr(circuit, "COMPILED_MIN_BLOCKS", 1)
    monkeypatch.setattr(circuit, "product_state", _no_simulator)
    gen = torch.Generator().manual_seed(100 + n_qubits * 10 + depth)
    points = torch.rand(6, n_qubits, generator=gen, dtype=torch.float64) * 8 - 4
    got = optimizer_response(points.float(), depth)
    assert got.dtype == torch.float32 and not circuit._kernel_failed
    torch.testing.assert_close(got.double(), _aer_expect_x(n_qubits, depth, points), rtol=0, atol=2e-6)


def test_compiled_kernel_equals_the_simulator_on_many_blocks(monkeypatch):
    """Past COMPILED_MIN_BLOCKS float32 blocks (and several kernel chunks) the kernel runs."""
    import qstudy.quantum._optimizer_circuit as circuit

    gen = torch.Generator().manual_seed(5)
    x = torch.rand(circuit.COMPILED_MIN_BLOCKS + 3, 4, generator=gen) * 8 - 4
    simulated = optimizer_response(x, 2, compiled=False)
    monkeypatch.setattr(circuit, "_COMPILED_CHUNK_BLOCKS", 5000)
    monkeypatch.setattr(circuit, "product_state", _no_simulator)
    torch.testing.assert_close(optimizer_response(x, 2), simulated, rtol=0, atol=2e-6)


@pytest.mark.parametrize(
    "n_qubits,depth,blocks,dtype,compiled",
    [
        (4, 2, 10, torch.float32, True),  # too few blocks to pay for a compile
        (4, 2, 1 << 14, torch.float64, True),  # float64 keeps the simulator's 1e-12 agreement with Aer
        (5, 2, 1 << 14, torch.float32, True),  # register above UNROLLED_MAX_QUBITS
        (4, 0, 1 << 14, torch.float32, True),  # depth 0 is sin
        (4, 2, 1 << 14, torch.float32, False),
    ],
)
def test_simulator_runs_where_the_kernel_does_not_apply(monkeypatch, n_qubits, depth, blocks, dtype, compiled):
    import qstudy.quantum._optimizer_circuit as circuit

    calls = []
    original = circuit.product_state
    monkeypatch.setattr(circuit, "product_state", lambda c, s: calls.append(c.shape[0]) or original(c, s))
    monkeypatch.setattr(circuit, "_compiled_response", lambda flat, depth: pytest.fail("the kernel ran"))
    out = optimizer_response(torch.rand(blocks, n_qubits, dtype=dtype), depth, compiled=compiled)
    assert out.shape == (blocks, n_qubits) and sum(calls) == blocks


def test_kernel_compile_failure_warns_once_and_simulates(monkeypatch):
    import qstudy.quantum._optimizer_circuit as circuit

    def broken(angles, depth):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(circuit, "COMPILED_MIN_BLOCKS", 1)
    monkeypatch.setattr(circuit, "_kernel", broken)
    monkeypatch.setattr(circuit, "_kernel_failed", False)
    x = torch.rand(7, 3)
    with pytest.warns(RuntimeWarning, match=r"unrolled circuit kernel failed \(RuntimeError: no C\+\+ compiler\)"):
        first = optimizer_response(x, 2)
    assert circuit._kernel_failed
    torch.testing.assert_close(first, optimizer_response(x, 2, compiled=False), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the failure is remembered: no second warning
        torch.testing.assert_close(optimizer_response(x, 2), first, rtol=0, atol=0)


def test_kernel_ring_permutation_is_the_simulators():
    from qstudy.quantum._optimizer_circuit import _ring_permutation
    from qstudy.quantum._statevector import _cnot_ring_gather

    for n_qubits in range(1, 7):
        assert list(_ring_permutation(n_qubits)) == _cnot_ring_gather(n_qubits, torch.device("cpu")).tolist()

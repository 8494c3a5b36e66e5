"""The attention response circuit (docs/design.md §3): Qiskit builder, torch and Aer paths, Fourier series."""

import math

import numpy as np
import pytest
import torch

from qstudy.quantum import aer_parity, attention_circuit, attention_response, bind_attention_circuit, response_series
from qstudy.quantum._attention_circuit import aer_circuit_response
from qstudy.quantum._fourier import evaluate_series, gated_response


def _angles(n_qubits, depth, seed=0):
    generator = torch.Generator().manual_seed(seed)
    a = (torch.rand(depth, n_qubits, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    b = (torch.rand(depth, n_qubits, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    return a, b


def test_circuit_structure_matches_design():
    circuit = attention_circuit(3, 2)
    names = [instruction.operation.name for instruction in circuit.data]
    assert names == ["h"] * 3 + (["ry", "rz"] * 3 + ["cx"] * 3) * 2
    ring = [
        tuple(circuit.find_bit(q).index for q in inst.qubits) for inst in circuit.data if inst.operation.name == "cx"
    ]
    assert ring[:3] == [(0, 1), (1, 2), (2, 0)]
    assert sorted(p.name for p in circuit.parameters) == sorted(
        ["s"] + [f"{v}[{layer},{q}]" for v in "ab" for layer in range(2) for q in range(3)]
    )


def test_statevector_of_bound_circuit_gives_phi():
    from qiskit.quantum_info import Statevector

    a, b = _angles(2, 1, seed=3)
    bound = bind_attention_circuit(attention_circuit(2, 1), 0.7, a.numpy(), b.numpy())
    expected = np.asarray(Statevector(bound)).sum().real / 2
    got = attention_response(torch.tensor(0.7, dtype=torch.float64), a, b).item()
    assert got == pytest.approx(expected, abs=1e-12)


def test_single_qubit_closed_form():
    # n=1, d=1: H then R_Z(b) R_Y(s+a); Φ = Re(Σψ)/√2 has a closed form.
    a, b = torch.tensor([[0.4]], dtype=torch.float64), torch.tensor([[-1.1]], dtype=torch.float64)
    s = torch.linspace(-5, 5, 11, dtype=torch.float64)
    theta = s + 0.4
    c, sn = torch.cos(theta / 2), torch.sin(theta / 2)
    psi0 = (c - sn) / math.sqrt(2) * complex(math.cos(0.55), math.sin(0.55))
    psi1 = (sn + c) / math.sqrt(2) * complex(math.cos(0.55), -math.sin(0.55))
    expected = (psi0 + psi1).real / math.sqrt(2)
    torch.testing.assert_close(attention_response(s, a, b), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("n_qubits", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_torch_and_aer_equal_direct_aer(n_qubits, depth):
    a, b = _angles(n_qubits, depth, seed=10 * n_qubits + depth)
    s = torch.tensor([-50.0, -17.3, -3.1, -0.2, 0.0, 0.9, 2.5, 11.0, 33.3, 50.0], dtype=torch.float64)
    direct = aer_circuit_response(s.numpy(), a.numpy(), b.numpy())
    for simulator in ("torch", "aer"):
        got = attention_response(s, a, b, simulator=simulator).numpy()
        assert np.abs(got - direct).max() < 1e-6, simulator
    assert np.abs(direct).max() <= 1 + 1e-12


@pytest.mark.parametrize("n_qubits", [7, 8])
@pytest.mark.parametrize("depth", [1, 2])
def test_gate_by_gate_path_equals_aer_values_and_gradients(n_qubits, depth):
    """Above _KRON_MAX_QUBITS the torch simulator applies gate by gate: values against a
    direct Aer simulation, gradients in s, a and b against the Aer path's (shift rule)."""
    from qstudy.quantum._attention_circuit import _KRON_MAX_QUBITS

    assert n_qubits > _KRON_MAX_QUBITS
    a, b = _angles(n_qubits, depth, seed=10 * n_qubits + depth)
    s = torch.tensor([-17.3, -0.2, 0.9, 11.0], dtype=torch.float64)
    direct = aer_circuit_response(s.numpy(), a.numpy(), b.numpy())
    weights = torch.tensor([0.3, -1.2, 0.8, 0.5], dtype=torch.float64)
    grads = {}
    for simulator in ("torch", "aer"):
        a_, b_, s_ = a.clone().requires_grad_(), b.clone().requires_grad_(), s.clone().requires_grad_()
        phi = attention_response(s_, a_, b_, simulator=simulator)
        assert np.abs(phi.detach().numpy() - direct).max() < 1e-6, simulator
        (phi * weights).sum().backward()
        grads[simulator] = (s_.grad, a_.grad, b_.grad)
    for name, g_torch, g_aer in zip("sab", grads["torch"], grads["aer"]):
        assert (g_torch - g_aer).abs().max() < 1e-6, name
    assert grads["aer"][1].abs().max() > 1e-3  # a real gradient, not zeros


def test_largest_register_equals_aer_at_one_point():
    """n_qubits = 12, the most the config allows: value and angle gradients at one score."""
    a, b = _angles(12, 1, seed=12)
    s = torch.tensor([0.7], dtype=torch.float64)
    direct = aer_circuit_response(s.numpy(), a.numpy(), b.numpy())
    grads = {}
    for simulator in ("torch", "aer"):
        a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
        phi = attention_response(s, a_, b_, simulator=simulator)
        assert abs(phi.item() - direct[0]) < 1e-6, simulator
        phi.sum().backward()
        grads[simulator] = (a_.grad, b_.grad)
    for g_torch, g_aer in zip(grads["torch"], grads["aer"]):
        assert (g_torch - g_aer).abs().max() < 1e-6


def test_response_is_bounded_and_keeps_shape_and_dtype():
    a, b = _angles(4, 2)
    s = torch.randn(3, 5, 7) * 20
    phi = attention_response(s, a, b)
    assert phi.shape == s.shape and phi.dtype == torch.float32
    assert phi.abs().max() <= 1 + 1e-5


def test_non_finite_scores_give_zero():
    a, b = _angles(4, 2)
    s = torch.tensor([float("-inf"), 0.5, float("inf"), float("nan")], dtype=torch.float64)
    phi = attention_response(s, a, b)
    assert phi[[0, 2, 3]].tolist() == [0.0, 0.0, 0.0]
    assert phi[1].item() != 0.0
    logits = s[:2] + 0.7 * phi[:2]
    assert logits[0].item() == float("-inf") and math.isfinite(logits[1].item())


def test_circuit_cost_does_not_depend_on_number_of_scores(monkeypatch):
    import qstudy.quantum._attention as attention

    seen = []
    original = attention.circuit_samples
    monkeypatch.setattr(attention, "circuit_samples", lambda p, *args: seen.append(p.numel()) or original(p, *args))
    a, b = _angles(3, 2)
    attention_response(torch.randn(10), a, b)
    attention_response(torch.randn(64, 64, 8), a, b)
    assert seen == [7, 7]  # n·d + 1 sample points, whatever the size of s


def _finite_difference(fn, tensor, eps=1e-6):
    grad = torch.zeros_like(tensor)
    for i in range(tensor.numel()):
        plus, minus = tensor.clone(), tensor.clone()
        plus.view(-1)[i] += eps
        minus.view(-1)[i] -= eps
        grad.view(-1)[i] = (fn(plus) - fn(minus)) / (2 * eps)
    return grad


@pytest.mark.parametrize("n_qubits,depth", [(1, 1), (2, 3), (3, 1), (4, 2)])
def test_gradients_equal_finite_differences_and_each_other(n_qubits, depth):
    a, b = _angles(n_qubits, depth, seed=7)
    s = torch.tensor([-2.3, 0.1, 1.7, 8.0], dtype=torch.float64)
    weights = torch.tensor([0.3, -1.2, 0.8, 0.5], dtype=torch.float64)
    grads = {}
    for simulator in ("torch", "aer"):
        a_, b_, s_ = a.clone().requires_grad_(), b.clone().requires_grad_(), s.clone().requires_grad_()
        (attention_response(s_, a_, b_, simulator) * weights).sum().backward()
        grads[simulator] = (s_.grad, a_.grad, b_.grad)

    def loss(s_, a_, b_):
        return float((attention_response(s_, a_, b_, "torch") * weights).sum())

    fd = (
        _finite_difference(lambda x: loss(x, a, b), s),
        _finite_difference(lambda x: loss(s, x, b), a),
        _finite_difference(lambda x: loss(s, a, x), b),
    )
    for simulator, got in grads.items():
        for name, g, f in zip("sab", got, fd):
            assert torch.allclose(g, f, atol=1e-6), (simulator, name)
    for g_torch, g_aer in zip(grads["torch"], grads["aer"]):
        assert torch.allclose(g_torch, g_aer, atol=1e-9)
    assert grads["aer"][1].abs().max() > 1e-3  # a real gradient, not zeros


def test_gated_response_backward_matches_autograd_of_series():
    torch.manual_seed(0)
    a, b = _angles(3, 1)  # odd n·d: half-integer frequencies
    a.requires_grad_(), b.requires_grad_()
    scores = (torch.randn(2, 3, 5, 6, dtype=torch.float64) * 4).requires_grad_()
    gate = torch.tensor([0.5, -0.2, 1.3], dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 5, 6, dtype=torch.float64)

    series, omega = response_series(a, b)
    fused = gated_response(scores, series, gate, omega)
    fused_grads = torch.autograd.grad((fused * upstream).sum(), (scores, gate, a, b))
    series, omega = response_series(a, b)
    plain = scores + gate.view(-1, 1, 1) * evaluate_series(scores, series, omega)
    plain_grads = torch.autograd.grad((plain * upstream).sum(), (scores, gate, a, b))
    torch.testing.assert_close(fused, plain, atol=1e-12, rtol=0)
    for got, expected in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


def test_aer_parity_is_tiny():
    a, b = _angles(4, 2, seed=5)
    parity = aer_parity(4, 2, a, b)
    assert 0.0 <= parity < 1e-9


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: attention_circuit(0, 2), "n_qubits must be an integer in [1, 12], got n_qubits=0"),
        (lambda: attention_circuit(13, 2), "n_qubits must be an integer in [1, 12], got n_qubits=13"),
        (lambda: attention_circuit(4, 0), "depth must be an integer >= 1, got depth=0"),
        (
            lambda: aer_parity(4, -1, torch.zeros(1, 4), torch.zeros(1, 4)),
            "depth must be an integer >= 1, got depth=-1",
        ),
        (
            lambda: attention_response(torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 4), simulator="qpu"),
            "simulator must be one of ['torch', 'aer'], got simulator='qpu'",
        ),
        (
            lambda: attention_response(torch.zeros(3), torch.zeros(2, 4), torch.zeros(2, 3)),
            "a and b must have the same shape [depth, n_qubits], got a of shape (2, 4) and b of shape (2, 3)",
        ),
        (
            lambda: attention_response(torch.zeros(3), torch.zeros(8), torch.zeros(8)),
            "a must be a 2-D tensor of shape [depth, n_qubits]",
        ),
        (
            lambda: attention_response(torch.zeros(3), torch.zeros(2, 13), torch.zeros(2, 13)),
            "1 <= n_qubits <= 12, got shape (2, 13)",
        ),
        (
            lambda: aer_parity(4, 2, torch.zeros(2, 3), torch.zeros(2, 3)),
            "a and b must have shape [depth, n_qubits] = [2, 4], got shape (2, 3)",
        ),
    ],
)
def test_bad_input_names_argument_value_and_range(call, message):
    with pytest.raises(ValueError) as error:
        call()
    assert message in str(error.value)


def test_import_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, qstudy.quantum; "
        "print(sorted(m for m in ('qiskit_aer', 'transformers', 'ray', 'mlflow', 'deepspeed') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
